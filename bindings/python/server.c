/* server.c — svc.Server: libsvc's server with Python handlers. Handlers run
 * on libsvc's threads, each of which keeps one Python thread state for its
 * life and holds the GIL only while a handler runs. With worker processes
 * libsvc's master forks; the fork hooks below make that fork as safe for
 * the interpreter as os.fork(). */
#include "svcmodule.h"

#include <pthread.h>
#include <string.h>

/* ---- one Python thread state per libsvc thread ---- */

/* Set once at import and never changed: the interpreter handlers run in,
 * and the key of each thread's state (freed when the thread ends). */
static PyInterpreterState *handler_interp;
static pthread_key_t thread_state_key;

static int interpreter_finalizing(void) {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

static void thread_state_free(void *p) {
  if (interpreter_finalizing())
    return; /* taking the GIL now would end this thread mid-destructor */
  PyEval_RestoreThread(p);
  PyThreadState_Clear(p);
  PyThreadState_DeleteCurrent();
}

/* Takes the GIL on this thread, making its thread state the first time:
 * 0, or -1 if no state could be made. */
static int enter_python(void) {
  PyThreadState *ts = pthread_getspecific(thread_state_key);
  if (!ts) {
    ts = PyThreadState_New(handler_interp);
    if (!ts)
      return -1;
    if (pthread_setspecific(thread_state_key, ts) != 0) {
      PyEval_RestoreThread(ts);
      PyThreadState_Clear(ts);
      PyThreadState_DeleteCurrent();
      return -1;
    }
  }
  PyEval_RestoreThread(ts);
  return 0;
}

/* ---- forking workers ---- */

/* The thread inside Server.run() while libsvc may fork workers from it;
 * the hooks do nothing for any other fork (os.fork does its own). */
static _Thread_local int forks_workers;
static _Thread_local PyGILState_STATE fork_gil;

static void flush_std_streams(void) {
  static const char *const names[] = {"stdout", "stderr"};
  for (size_t i = 0; i < 2; i++) {
    PyObject *f = PySys_GetObject(names[i]); /* borrowed */
    PyObject *r =
        f && f != Py_None ? PyObject_CallMethod(f, "flush", NULL) : NULL;
    Py_XDECREF(r);
    PyErr_Clear(); /* a closed stream is no reason not to fork */
  }
}

/* Before the fork: hold the GIL (the child's only thread must own it) and
 * the interpreter's locks, as os.fork does. Unflushed output would be
 * written twice; objects made so far go to gc's permanent generation, so
 * the collector does not touch (and copy) the pages workers share. */
static void before_fork(void) {
  if (!forks_workers)
    return;
  fork_gil = PyGILState_Ensure();
  flush_std_streams();
  PyObject *gc = PyImport_ImportModule("gc");
  PyObject *r = gc ? PyObject_CallMethod(gc, "freeze", NULL) : NULL;
  Py_XDECREF(r);
  Py_XDECREF(gc);
  PyErr_Clear();
  PyOS_BeforeFork();
}

static void after_fork_parent(void) {
  if (!forks_workers)
    return;
  PyOS_AfterFork_Parent();
  PyGILState_Release(fork_gil);
}

static void after_fork_child(void) {
  if (!forks_workers)
    return;
  PyOS_AfterFork_Child();
  PyGILState_Release(fork_gil);
}

/* ---- Server ---- */

typedef struct py_method py_method;

typedef struct {
  PyObject_HEAD svc_server *s;
  py_method *methods;    /* what the handlers call */
  PyObject *worker_init; /* called in each worker before it serves */
  char name[128];        /* the service's, for the log */
  int serving;           /* start() or run() began */
  int running;           /* a thread is inside run(): it frees on close */
  int close_pending;     /* close() came while run() was serving */
} ServerObject;

struct py_method {
  py_method *next;
  ServerObject *server; /* borrowed: the server outlives its threads */
  PyObject *fn;
  char name[SVC_METHOD_MAX + 1];
};

/* Logs the exception of a handler that raised to stderr (the traceback,
 * flushed: svc-monitor captures it) and returns what the caller gets:
 * HandlerError's code, else SVC_EHANDLER. */
static int handler_failed(const py_method *m) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  long code = 0;
  if (value && PyObject_IsInstance(value, svc_py_handler_error()) == 1) {
    PyObject *hc = PyObject_GetAttrString(value, "handler_code");
    code = hc && PyLong_Check(hc) ? PyLong_AsLong(hc) : 0;
    Py_XDECREF(hc);
    PyErr_Clear();
  }
  if (code > 0 && code <= INT32_MAX) { /* the application's answer */
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return (int)code;
  }
  PySys_WriteStderr("svc[%s]: handler '%s' raised:\n", m->server->name,
                    m->name);
  if (value && tb)
    PyException_SetTraceback(value, tb);
  PyErr_Display(type, value, tb);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
  flush_std_streams();
  return SVC_EHANDLER;
}

/* Sends what a handler returned: a bytes-like object, or None for an
 * empty reply. */
static int set_reply(const py_method *m, PyObject *ret, svc_reply *reply) {
  if (ret == Py_None)
    return 0;
  if (PyBytes_CheckExact(ret))
    return svc_reply_set(reply, PyBytes_AS_STRING(ret),
                         (size_t)PyBytes_GET_SIZE(ret));
  Py_buffer b;
  if (PyObject_GetBuffer(ret, &b, PyBUF_SIMPLE) < 0) {
    PyErr_Format(PyExc_TypeError,
                 "a handler returns bytes, bytearray, memoryview or None, "
                 "not %.100s",
                 Py_TYPE(ret)->tp_name);
    return handler_failed(m);
  }
  int rc = svc_reply_set(reply, b.buf, (size_t)b.len);
  PyBuffer_Release(&b);
  return rc;
}

/* The request's memoryview points into memory that is reused when the
 * handler returns: a handler that kept it finds it released. Views made
 * from it (req[4:], req.cast(...), memoryview(req)) share its buffer and
 * cannot be revoked; one that outlives the handler is an error, logged, as
 * is a buffer exported from it (e.g. numpy.frombuffer). */
static int drop_request_view(const py_method *m, PyObject *view) {
  int rc = 0;
  if (((PyMemoryViewObject *)view)->mbuf->exports > 1) {
    PyErr_SetString(PyExc_BufferError,
                    "a view of the request outlived the handler (copy what "
                    "you keep: bytes(req))");
    rc = handler_failed(m);
  }
  if (Py_REFCNT(view) > 1) {
    PyObject *r = PyObject_CallMethod(view, "release", NULL);
    if (!r && rc == 0)
      rc = handler_failed(m);
    PyErr_Clear();
    Py_XDECREF(r);
  }
  Py_DECREF(view);
  return rc;
}

static int py_handler(void *ctx, const void *req, size_t len,
                      svc_reply *reply) {
  const py_method *m = ctx;
  if (enter_python() < 0)
    return SVC_ENOMEM;
  PyObject *view = PyMemoryView_FromMemory((char *)(len ? req : ""),
                                           (Py_ssize_t)len, PyBUF_READ);
  PyObject *ret = view ? PyObject_CallOneArg(m->fn, view) : NULL;
  int rc = ret ? set_reply(m, ret, reply) : handler_failed(m);
  Py_XDECREF(ret);
  if (view) {
    int vrc = drop_request_view(m, view);
    if (rc == 0)
      rc = vrc;
  }
  PyEval_SaveThread();
  return rc;
}

/* Runs in each worker (or once before serving without workers). */
static int worker_init(void *ctx) {
  ServerObject *self = ctx;
  forks_workers = 0; /* a worker forks no workers: os.fork() in here is
                        the interpreter's own */
  if (!self->worker_init || self->worker_init == Py_None)
    return 0;
  PyGILState_STATE g = PyGILState_Ensure();
  PyObject *r = PyObject_CallNoArgs(self->worker_init);
  int rc = 0;
  if (!r) {
    PySys_WriteStderr("svc[%s]: worker init raised:\n", self->name);
    PyErr_Print();
    rc = -1;
  }
  Py_XDECREF(r);
  PyGILState_Release(g);
  return rc;
}

static int server_ready(ServerObject *self, int before_serving) {
  if (!self->s)
    PyErr_SetString(PyExc_ValueError, "the server is closed");
  else if (before_serving && self->serving)
    PyErr_SetString(PyExc_ValueError, "the server is already serving");
  else
    return 1;
  return 0;
}

static int parse_wait(const char *wait, svc_wait_policy *p) {
  static const struct {
    const char *name;
    svc_wait_policy p;
  } policies[] = {{"adaptive", SVC_WAIT_ADAPTIVE},
                  {"spin", SVC_WAIT_SPIN},
                  {"block", SVC_WAIT_BLOCK}};
  for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++)
    if (strcmp(wait, policies[i].name) == 0) {
      *p = policies[i].p;
      return 1;
    }
  PyErr_Format(PyExc_ValueError,
               "wait must be 'adaptive', 'spin' or 'block', not '%s'", wait);
  return 0;
}

static void server_shut(ServerObject *self) {
  svc_server *s = self->s;
  if (s) {
    self->s = NULL;
    Py_BEGIN_ALLOW_THREADS
    svc_server_free(s); /* waits for handlers, which need the GIL */
    Py_END_ALLOW_THREADS
  }
  for (py_method *m = self->methods, *next; m; m = next) {
    next = m->next;
    Py_DECREF(m->fn);
    PyMem_Free(m);
  }
  self->methods = NULL;
  self->serving = 0;
}

static int server_init(ServerObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"name", "max_msg",       "max_threads",
                           "wait", "allow_any_uid", NULL};
  const char *name, *wait = "adaptive";
  Py_ssize_t max_msg = 0;
  int max_threads = 0, any_uid = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "s|nisp", kwlist, &name, &max_msg,
                                   &max_threads, &wait, &any_uid))
    return -1;
  if (self->running) {
    PyErr_SetString(PyExc_ValueError, "the server is running");
    return -1;
  }
  svc_wait_policy policy;
  if (!parse_wait(wait, &policy))
    return -1;
  if (max_msg < 0 || max_threads < 0) {
    PyErr_SetString(PyExc_ValueError,
                    "max_msg and max_threads must not be negative");
    return -1;
  }
  server_shut(self);
  svc_server *s = NULL;
  int rc = svc_server_new(name, &s);
  if (rc == 0)
    rc = svc_server_set_wait(s, policy);
  if (rc == 0 && max_msg > 0)
    rc = svc_server_set_max_msg(s, (size_t)max_msg);
  if (rc == 0 && max_threads > 0)
    rc = svc_server_set_max_threads(s, max_threads);
  if (rc == 0 && any_uid)
    rc = svc_server_set_allow_any_uid(s, 1);
  if (rc == 0)
    rc = svc_server_set_worker_init(s, worker_init, self);
  if (rc < 0) {
    svc_server_free(s);
    svc_py_raise(rc, 0, 0);
    return -1;
  }
  self->s = s;
  snprintf(self->name, sizeof self->name, "%s", name);
  return 0;
}

static void server_dealloc(ServerObject *self) {
  server_shut(self);
  Py_CLEAR(self->worker_init);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *server_add_method(ServerObject *self, PyObject *args) {
  const char *name;
  PyObject *fn;
  if (!PyArg_ParseTuple(args, "sO", &name, &fn) || !server_ready(self, 1))
    return NULL;
  if (!PyCallable_Check(fn)) {
    PyErr_SetString(PyExc_TypeError, "a handler must be callable");
    return NULL;
  }
  py_method *m = PyMem_Calloc(1, sizeof *m);
  if (!m)
    return PyErr_NoMemory();
  snprintf(m->name, sizeof m->name, "%s", name);
  m->server = self;
  int rc = svc_server_method(self->s, name, py_handler, m);
  if (rc < 0) {
    PyMem_Free(m);
    return svc_py_raise(rc, 0, 0);
  }
  Py_INCREF(fn);
  m->fn = fn;
  m->next = self->methods;
  self->methods = m;
  Py_RETURN_NONE;
}

static PyObject *server_listen(ServerObject *self, PyObject *args) {
  const char *url;
  if (!PyArg_ParseTuple(args, "s", &url) || !server_ready(self, 1))
    return NULL;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = svc_server_listen(self->s, url);
  Py_END_ALLOW_THREADS
  if (rc < 0)
    return svc_py_raise_text(rc, svc_server_last_error_text(self->s), 0, 0);
  Py_RETURN_NONE;
}

static PyObject *server_start(ServerObject *self, PyObject *unused) {
  (void)unused;
  if (!server_ready(self, 1))
    return NULL;
  int rc = svc_server_start(self->s);
  if (rc < 0)
    return svc_py_raise(rc, 0, 0);
  self->serving = 1;
  Py_RETURN_NONE;
}

static int parse_workers(PyObject *obj, int *min, int *max) {
  if (PyLong_Check(obj)) {
    *min = *max = PyLong_AsLong(obj) > INT32_MAX ? -1 : (int)PyLong_AsLong(obj);
    return !PyErr_Occurred();
  }
  if (PyTuple_Check(obj) && PyArg_ParseTuple(obj, "ii", min, max))
    return 1;
  PyErr_Clear();
  PyErr_SetString(PyExc_TypeError, "workers is an int or a (min, max) tuple");
  return 0;
}

static PyObject *server_run(ServerObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"workers", "worker_init", NULL};
  PyObject *workers = Py_None, *init = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO", kwlist, &workers, &init) ||
      !server_ready(self, 1))
    return NULL;
  if (init != Py_None && !PyCallable_Check(init)) {
    PyErr_SetString(PyExc_TypeError, "worker_init must be callable");
    return NULL;
  }
  int min = 1, max = 1, rc = 0;
  if (workers != Py_None) {
    if (!parse_workers(workers, &min, &max))
      return NULL;
    rc = svc_server_set_workers(self->s, min, max);
    if (rc < 0)
      return svc_py_raise(rc, 0, 0);
  }
  Py_INCREF(init);
  Py_XSETREF(self->worker_init, init);
  self->serving = 1;
  self->running = 1;
  Py_INCREF(self); /* a close() meanwhile must not free it under us */
  forks_workers = 1;
  Py_BEGIN_ALLOW_THREADS
  rc = svc_server_run(self->s);
  Py_END_ALLOW_THREADS
  forks_workers = 0;
  self->running = 0;
  if (self->close_pending) {
    self->close_pending = 0;
    server_shut(self);
  }
  Py_DECREF(self);
  if (rc < 0)
    return svc_py_raise(rc, 0, 0);
  Py_RETURN_NONE;
}

static PyObject *server_stop(ServerObject *self, PyObject *unused) {
  (void)unused;
  if (self->s)
    svc_server_stop(self->s);
  Py_RETURN_NONE;
}

static PyObject *server_close(ServerObject *self, PyObject *unused) {
  (void)unused;
  if (self->running) { /* run() on another thread still uses the server */
    self->close_pending = 1;
    svc_server_stop(self->s);
    Py_RETURN_NONE;
  }
  server_shut(self);
  Py_RETURN_NONE;
}

static PyMethodDef server_methods[] = {
    {"add_method", (PyCFunction)server_add_method, METH_VARARGS,
     "add_method(name, fn)\n\nServes method name with fn(request: "
     "memoryview) -> bytes-like or None. The request view is valid only "
     "while fn runs. fn raises svc.HandlerError(code) to answer with an "
     "application error code; any other exception is logged to stderr and "
     "the caller gets SVC_EHANDLER. Before start() or run() only."},
    {"listen", (PyCFunction)server_listen, METH_VARARGS,
     "listen(url)\n\nAdds a listener (shm://NAME, unix://PATH, "
     "tcp://HOST:PORT) and binds it now: svc.Error (SVC_EADDRINUSE) if "
     "another server holds it."},
    {"start", (PyCFunction)server_start, METH_NOARGS,
     "start()\n\nServes on background threads and returns (no workers)."},
    {"run", (PyCFunction)(void (*)(void))server_run,
     METH_VARARGS | METH_KEYWORDS,
     "run(workers=None, worker_init=None)\n\nServes until stop(), SIGTERM "
     "or SIGINT. workers is n or (min, max) processes, scaled by CPU use "
     "(SVC_WORKERS_MIN / SVC_WORKERS_MAX override it); they are forked "
     "here, so data loaded before run() is shared copy-on-write. "
     "worker_init() runs in each worker before it serves."},
    {"stop", (PyCFunction)server_stop, METH_NOARGS,
     "stop()\n\nAsks the server to stop; returns at once. Safe from a "
     "handler and from any thread."},
    {"close", (PyCFunction)server_close, METH_NOARGS,
     "close()\n\nStops serving, waits for running handlers and closes the "
     "listeners."},
    {"__enter__", svc_py_enter, METH_NOARGS, NULL},
    {"__exit__", svc_py_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ServerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "svc.Server",
    .tp_basicsize = sizeof(ServerObject),
    .tp_dealloc = (destructor)server_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Server(name, max_msg=0, max_threads=0, wait='adaptive', "
              "allow_any_uid=False)\n\n"
              "A libsvc service NAME with Python handlers, which run on "
              "libsvc's threads with the GIL held. wait is how idle "
              "connections wait on shm:// ('adaptive', 'spin' or 'block').",
    .tp_methods = server_methods,
    .tp_init = (initproc)server_init,
    .tp_new = PyType_GenericNew,
};

int svc_py_server_setup(PyObject *m) {
  handler_interp = PyInterpreterState_Get();
  if (pthread_key_create(&thread_state_key, thread_state_free) != 0 ||
      pthread_atfork(before_fork, after_fork_parent, after_fork_child) != 0) {
    PyErr_SetString(PyExc_OSError, "svc: no thread key or fork hooks");
    return -1;
  }
  if (PyType_Ready(&ServerType) < 0)
    return -1;
  return PyModule_AddObjectRef(m, "Server", (PyObject *)&ServerType);
}
