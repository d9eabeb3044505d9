/* svcmodule.c — the CPython extension module svc._svc: libsvc's client
 * and server for Python, written against Python.h so a call costs what a C
 * extension call costs. This file holds the errors: svc.Error and one
 * subclass per code a caller handles differently (svc_errors below). */
#include "svcmodule.h"

/* ---- errors ---- */

/* The exception class of each code; Error for the rest. */
static struct {
  int code;
  const char *name; /* svc.NAME */
  const char *doc;
  PyObject *type;
} svc_errors[] = {
    {SVC_ECONNREFUSED, "ConnectionRefused", "No server listens at the URL.",
     NULL},
    {SVC_EPEERGONE, "PeerGone", "The server closed the connection or died.",
     NULL},
    {SVC_ETIMEDOUT, "TimedOut", "The call did not finish within its timeout.",
     NULL},
    {SVC_ENOMETHOD, "NoMethod", "The server has no such method.", NULL},
    {SVC_ETOOBIG, "TooBig", "A message over the maximum message size.", NULL},
    {SVC_EHANDLER, "HandlerError",
     "The handler returned an application error: .handler_code.", NULL},
    {SVC_EPROTO, "ProtocolError", "Malformed bytes from the peer.", NULL},
    {SVC_EAGAIN, "WouldBlock",
     "Try again: the window is full, or nothing finished yet.", NULL},
    {SVC_EPERM, "PermissionDenied",
     "The server runs as another user, or a key file is readable by others.",
     NULL},
    {SVC_ETLS, "TLSError",
     "A TLS handshake or certificate check failed; the message says why.",
     NULL},
};
#define NERRORS (sizeof svc_errors / sizeof svc_errors[0])

static PyObject *svc_Error;

/* Sets obj.name = value, consuming value (which may be NULL: an error). */
static int set_attr(PyObject *obj, const char *name, PyObject *value) {
  int rc = value ? PyObject_SetAttrString(obj, name, value) : -1;
  Py_XDECREF(value);
  return rc;
}

PyObject *svc_py_raise(int rc, int handler_code, uint64_t call_id) {
  return svc_py_raise_text(rc, NULL, handler_code, call_id);
}

PyObject *svc_py_raise_text(int rc, const char *text, int handler_code,
                            uint64_t call_id) {
  PyObject *type = svc_Error;
  for (size_t i = 0; i < NERRORS; i++)
    if (svc_errors[i].code == rc)
      type = svc_errors[i].type;
  PyObject *args =
      Py_BuildValue("(s)", text && text[0] ? text : svc_strerror(rc));
  PyObject *exc = args ? PyObject_Call(type, args, NULL) : NULL;
  Py_XDECREF(args);
  if (!exc)
    return NULL;
  if (set_attr(exc, "code", PyLong_FromLong(rc)) < 0 ||
      set_attr(exc, "name", PyUnicode_FromString(svc_err_name(rc))) < 0 ||
      (rc == SVC_EHANDLER &&
       set_attr(exc, "handler_code", PyLong_FromLong(handler_code)) < 0) ||
      (call_id &&
       set_attr(exc, "call_id", PyLong_FromUnsignedLongLong(call_id)) < 0)) {
    Py_DECREF(exc);
    return NULL;
  }
  PyErr_SetObject(type, exc);
  Py_DECREF(exc);
  return NULL;
}

PyObject *svc_py_handler_error(void) {
  for (size_t i = 0; i < NERRORS; i++)
    if (svc_errors[i].code == SVC_EHANDLER)
      return svc_errors[i].type;
  return svc_Error;
}

/* ---- shared by Client and Server ---- */

PyObject *svc_py_enter(PyObject *self, PyObject *unused) {
  (void)unused;
  Py_INCREF(self);
  return self;
}

PyObject *svc_py_exit(PyObject *self, PyObject *args) {
  (void)args;
  return PyObject_CallMethod(self, "close", NULL);
}

/* ---- the module ---- */

static int add_errors(PyObject *m) {
  svc_Error = PyErr_NewExceptionWithDoc(
      "svc.Error", "A libsvc call failed: .code (SVC_E*, negative), .name.",
      NULL, NULL);
  if (!svc_Error || PyModule_AddObjectRef(m, "Error", svc_Error) < 0)
    return -1;
  for (size_t i = 0; i < NERRORS; i++) {
    char qual[64];
    snprintf(qual, sizeof qual, "svc.%s", svc_errors[i].name);
    svc_errors[i].type =
        PyErr_NewExceptionWithDoc(qual, svc_errors[i].doc, svc_Error, NULL);
    if (!svc_errors[i].type ||
        PyModule_AddObjectRef(m, svc_errors[i].name, svc_errors[i].type) < 0)
      return -1;
  }
  /* The codes, by their C names: svc.ETOOBIG == -7. */
#define SVC__ADD_CODE(name, value, text)                                       \
  if (PyModule_AddIntConstant(m, #name, value) < 0)                            \
    return -1;
  SVC_ERRNO_MAP(SVC__ADD_CODE)
#undef SVC__ADD_CODE
  return 0;
}

static struct PyModuleDef svc_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_svc",
    .m_doc = "libsvc: call functions in another process at shared-memory "
             "speed (the C core of the svc package).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__svc(void) {
  PyObject *m = PyModule_Create(&svc_module);
  if (!m)
    return NULL;
  if (add_errors(m) < 0 || svc_py_client_setup(m) < 0 ||
      svc_py_server_setup(m) < 0 ||
      PyModule_AddStringConstant(m, "__version__", svc_version()) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
