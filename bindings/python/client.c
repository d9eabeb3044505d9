/* client.c — svc.Client: a libsvc connection for Python. Calls release the
 * GIL while libsvc waits; call_view hands out the reply where libsvc holds
 * it (the shared region on shm://) as a memoryview, and refuses the next
 * call while that view is alive. */
#include "svcmodule.h"

/* ---- Client ---- */

typedef struct {
  PyObject_HEAD svc_client *c;
  int exports; /* memoryviews of the current reply still alive */
} ClientObject;

/* 1 if no memoryview of the current reply is alive; else 0 with
 * BufferError set (the next call would reuse the memory it shows). */
static int views_released(ClientObject *self) {
  if (!self->exports)
    return 1;
  PyErr_SetString(PyExc_BufferError,
                  "a memoryview of the last reply is still in use");
  return 0;
}

/* Closes the connection, if open, with the GIL released. */
static void client_shut(ClientObject *self) {
  svc_client *c = self->c;
  if (!c)
    return;
  self->c = NULL;
  Py_BEGIN_ALLOW_THREADS
  svc_client_close(c);
  Py_END_ALLOW_THREADS
}

static int client_init(ClientObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"url", "timeout", "window", "max_msg", NULL};
  const char *url;
  double timeout = 0;
  int window = 0;
  Py_ssize_t max_msg = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "s|din", kwlist, &url, &timeout,
                                   &window, &max_msg))
    return -1;
  if (timeout < 0 || window < 0 || max_msg < 0) {
    PyErr_SetString(PyExc_ValueError,
                    "timeout, window and max_msg must not be negative");
    return -1;
  }
  if (!views_released(self))
    return -1; /* re-initialising would close the memory under the view */
  client_shut(self);
  svc_client *c = NULL;
  char why[256];
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = svc_client_open_ex(url, &c, why, sizeof why);
  Py_END_ALLOW_THREADS
  if (rc == 0 && timeout > 0)
    rc = svc_client_set_timeout(c, (int)(timeout * 1000 + 0.5));
  if (rc == 0 && window > 0)
    rc = svc_client_set_window(c, window);
  if (rc == 0 && max_msg > 0)
    rc = svc_client_set_max_msg(c, (size_t)max_msg);
  if (rc < 0) {
    const char *text = c ? svc_client_last_error_text(c) : why;
    svc_py_raise_text(rc, text, 0, 0);
    svc_client_close(c);
    return -1;
  }
  self->c = c;
  return 0;
}

static void client_dealloc(ClientObject *self) {
  client_shut(self);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static int client_ready(ClientObject *self) {
  if (self->c)
    return 1;
  PyErr_SetString(PyExc_ValueError, "the client is closed");
  return 0;
}

/* A call's reply as bytes, or the exception. */
static PyObject *reply_bytes(ClientObject *self, int rc, const void *resp,
                             size_t len) {
  if (rc < 0)
    return svc_py_raise_text(rc, svc_client_last_error_text(self->c),
                             svc_client_handler_code(self->c), 0);
  return PyBytes_FromStringAndSize(resp ? resp : "", (Py_ssize_t)len);
}

static int parse_call(PyObject *args, const char **method, Py_buffer *req) {
  req->buf = NULL;
  req->obj = NULL;
  return PyArg_ParseTuple(args, "s|y*", method, req);
}

/* Parses (method, request) and makes the call with the GIL released.
 * Returns 0 with the reply in *resp and *len, an SVC_E* code, or 1 with a
 * Python exception set. */
static int make_call(ClientObject *self, PyObject *args, const void **resp,
                     size_t *len) {
  const char *method;
  Py_buffer req;
  if (!client_ready(self) || !parse_call(args, &method, &req))
    return 1;
  if (!views_released(self)) {
    PyBuffer_Release(&req);
    return 1;
  }
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = svc_call(self->c, method, req.buf ? req.buf : "",
                req.buf ? (size_t)req.len : 0, resp, len);
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&req);
  return rc;
}

static PyObject *client_call(ClientObject *self, PyObject *args) {
  const void *resp = NULL;
  size_t len = 0;
  int rc = make_call(self, args, &resp, &len);
  return rc > 0 ? NULL : reply_bytes(self, rc, resp, len);
}

/* ---- zero-copy replies: a memoryview over the reply in the region ---- */

typedef struct {
  PyObject_HEAD ClientObject *client;
  const void *buf;
  Py_ssize_t len;
} ReplyObject;

static int reply_getbuffer(ReplyObject *self, Py_buffer *view, int flags) {
  int rc = PyBuffer_FillInfo(view, (PyObject *)self, (void *)self->buf,
                             self->len, 1, flags);
  if (rc == 0)
    self->client->exports++;
  return rc;
}

static void reply_releasebuffer(ReplyObject *self, Py_buffer *view) {
  (void)view;
  self->client->exports--;
}

static void reply_dealloc(ReplyObject *self) {
  Py_XDECREF(self->client);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyBufferProcs reply_as_buffer = {
    (getbufferproc)reply_getbuffer,
    (releasebufferproc)reply_releasebuffer,
};

static PyTypeObject ReplyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "svc._Reply",
    .tp_basicsize = sizeof(ReplyObject),
    .tp_dealloc = (destructor)reply_dealloc,
    .tp_as_buffer = &reply_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The reply of a call, where libsvc holds it.",
};

static PyObject *client_call_view(ClientObject *self, PyObject *args) {
  const void *resp = NULL;
  size_t len = 0;
  int rc = make_call(self, args, &resp, &len);
  if (rc > 0)
    return NULL;
  if (rc < 0)
    return svc_py_raise_text(rc, svc_client_last_error_text(self->c),
                             svc_client_handler_code(self->c), 0);
  ReplyObject *r = PyObject_New(ReplyObject, &ReplyType);
  if (!r)
    return NULL;
  Py_INCREF(self);
  r->client = self;
  r->buf = resp ? resp : "";
  r->len = (Py_ssize_t)len;
  PyObject *mv = PyMemoryView_FromObject((PyObject *)r);
  Py_DECREF(r);
  return mv;
}

static PyObject *client_send(ClientObject *self, PyObject *args) {
  const char *method;
  Py_buffer req;
  if (!client_ready(self) || !parse_call(args, &method, &req))
    return NULL;
  uint64_t id = 0;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = svc_call_send(self->c, method, req.buf ? req.buf : "",
                     req.buf ? (size_t)req.len : 0, &id);
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&req);
  if (rc < 0)
    return svc_py_raise(rc, 0, 0);
  return PyLong_FromUnsignedLongLong(id);
}

static PyObject *client_recv(ClientObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"timeout", NULL};
  PyObject *timeout_obj = Py_None;
  if (!client_ready(self) ||
      !PyArg_ParseTupleAndKeywords(args, kw, "|O", kwlist, &timeout_obj))
    return NULL;
  int ms = -1;
  if (timeout_obj != Py_None) {
    double t = PyFloat_AsDouble(timeout_obj);
    if (t == -1 && PyErr_Occurred())
      return NULL;
    ms = t <= 0 ? 0 : (int)(t * 1000 + 0.5);
  }
  if (!views_released(self))
    return NULL;
  uint64_t id = 0;
  const void *resp = NULL;
  size_t len = 0;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = svc_call_recv(self->c, ms, &id, &resp, &len);
  Py_END_ALLOW_THREADS
  if (id == 0) {
    if (rc == SVC_EAGAIN || rc == SVC_ESTATE)
      Py_RETURN_NONE; /* nothing finished in time, or nothing in flight */
    return svc_py_raise(rc, 0, 0);
  }
  if (rc < 0) /* that call's own failure: .call_id says which */
    return svc_py_raise_text(rc, svc_client_last_error_text(self->c),
                             svc_client_handler_code(self->c), id);
  PyObject *value = reply_bytes(self, rc, resp, len);
  if (!value)
    return NULL;
  return Py_BuildValue("(KN)", (unsigned long long)id, value);
}

static PyObject *client_fileno(ClientObject *self, PyObject *unused) {
  (void)unused;
  if (!client_ready(self))
    return NULL;
  int fd = svc_client_fd(self->c);
  if (fd < 0)
    return svc_py_raise(fd, 0, 0);
  return PyLong_FromLong(fd);
}

static PyObject *client_close(ClientObject *self, PyObject *unused) {
  (void)unused;
  if (!views_released(self))
    return NULL;
  client_shut(self);
  Py_RETURN_NONE;
}

static PyMethodDef client_methods[] = {
    {"call", (PyCFunction)client_call, METH_VARARGS,
     "call(method, request=b'') -> bytes\n\nCalls method with request (any "
     "bytes-like object) and returns the reply. Raises svc.Error."},
    {"call_view", (PyCFunction)client_call_view, METH_VARARGS,
     "call_view(method, request=b'') -> memoryview\n\nLike call, but the "
     "reply is not copied: the memoryview points where libsvc holds it and "
     "is valid until the next call on this client (release it first)."},
    {"send", (PyCFunction)client_send, METH_VARARGS,
     "send(method, request=b'') -> int\n\nSends a call without waiting; "
     "returns its id for recv. Raises svc.WouldBlock when the window is "
     "full."},
    {"recv", (PyCFunction)(void (*)(void))client_recv,
     METH_VARARGS | METH_KEYWORDS,
     "recv(timeout=None) -> (id, bytes) or None\n\nThe next finished call "
     "sent with send; None when none finished within timeout (seconds; "
     "None waits for ever) or none is in flight. A call that failed raises "
     "its svc.Error, whose .call_id is that call's id."},
    {"fileno", (PyCFunction)client_fileno, METH_NOARGS,
     "fileno() -> int\n\nA descriptor that polls readable while a finished "
     "call waits in recv (for selectors and asyncio's add_reader)."},
    {"close", (PyCFunction)client_close, METH_NOARGS,
     "close()\n\nCloses the connection."},
    {"__enter__", svc_py_enter, METH_NOARGS, NULL},
    {"__exit__", svc_py_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ClientType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "svc.Client",
    .tp_basicsize = sizeof(ClientObject),
    .tp_dealloc = (destructor)client_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Client(url, timeout=0, window=0, max_msg=0)\n\n"
              "A connection to a libsvc service: shm://NAME, unix://PATH or "
              "tcp://HOST:PORT. timeout is per call in seconds (0: none).",
    .tp_methods = client_methods,
    .tp_init = (initproc)client_init,
    .tp_new = PyType_GenericNew,
};

int svc_py_client_setup(PyObject *m) {
  if (PyType_Ready(&ClientType) < 0 || PyType_Ready(&ReplyType) < 0)
    return -1;
  return PyModule_AddObjectRef(m, "Client", (PyObject *)&ClientType);
}
