/* svcmodule.h — what the files of the extension module svc._svc share:
 * the error classes (svcmodule.c), Client (client.c) and Server
 * (server.c). */
#ifndef SVC_PY_MODULE_H
#define SVC_PY_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "svc.h"

/* Raises the svc.Error subclass of rc (< 0), with .code and .name, with
 * .handler_code for SVC_EHANDLER, and with .call_id when call_id is not 0
 * (a call sent with send() that failed). Returns NULL. */
/* Raises the exception for rc (< 0) with svc_strerror's text, or with
 * text when it is not empty (libsvc's sentence on why); handler_code for
 * SVC_EHANDLER, and call_id (when not 0) names the call sent with send()
 * that failed. Return NULL. */
PyObject *svc_py_raise(int rc, int handler_code, uint64_t call_id);
PyObject *svc_py_raise_text(int rc, const char *text, int handler_code,
                            uint64_t call_id);

/* svc.HandlerError (borrowed): a handler raises it to send its code. */
PyObject *svc_py_handler_error(void);

/* __enter__ returns self; __exit__ calls self.close(). */
PyObject *svc_py_enter(PyObject *self, PyObject *unused);
PyObject *svc_py_exit(PyObject *self, PyObject *args);

/* Readies a type and adds it to the module m: 0, or -1 with an exception. */
int svc_py_client_setup(PyObject *m);
int svc_py_server_setup(PyObject *m);

#endif
