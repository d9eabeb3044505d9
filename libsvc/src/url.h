/* url.h — parse the URL forms (shm://NAME, unix:///path, tcp://HOST:PORT,
 * tls://HOST:PORT?k=v&...) and resolve where a shm:// service's rendezvous
 * socket lives. Pure except svc__runtime_dir, which reads the environment. */
#ifndef SVC_URL_H
#define SVC_URL_H

#include <stddef.h>
#include <stdint.h>

#define SVC__NAME_MAX 64  /* service names */
#define SVC__PATH_MAX 108 /* sizeof(sockaddr_un.sun_path) */
#define SVC__HOST_MAX 255
#define SVC__FILE_MAX 1024 /* a tls:// file parameter, decoded */

/* tls:// settings, from the URL's query (percent-decoded; "" = not given).
 * Which ones a side accepts is the transport's rule, not the parser's. */
typedef struct svc__tls_params {
  char cert[SVC__FILE_MAX];           /* PEM certificate (chain) of this side */
  char key[SVC__FILE_MAX];            /* PEM private key of cert */
  char ca[SVC__FILE_MAX];             /* client: CAs the server must chain to */
  char client_ca[SVC__FILE_MAX];      /* server: CAs a client must chain to */
  char servername[SVC__HOST_MAX + 1]; /* client: name to verify, if not host */
} svc__tls_params;

typedef struct svc__url {
  char scheme[8];               /* "shm", "unix", "tcp" or "tls" */
  char name[SVC__NAME_MAX + 1]; /* shm: the service name */
  char path[SVC__PATH_MAX];     /* unix: the socket path */
  char host[SVC__HOST_MAX + 1]; /* tcp, tls: name or address, no brackets */
  uint16_t port;                /* tcp, tls */
  svc__tls_params tls;          /* tls */
} svc__url;

/* Parses s into *u. SVC_EINVAL for anything that is not one of the forms
 * above with valid parts (service name [A-Za-z0-9._-]{1,64} not starting
 * with '.', absolute socket path under 108 bytes, port 1-65535; a tls://
 * query of known keys, each at most once, with non-empty values where %XX
 * decodes a byte other than NUL). Only tls:// takes a query. */
int svc__url_parse(const char *s, svc__url *u);

/* 1 if name is a valid service name. */
int svc__name_valid(const char *name);

/* Directory for shm rendezvous sockets: $SVC_RUNTIME_DIR, else
 * $XDG_RUNTIME_DIR/svc, else /tmp/svc-$UID. SVC_EINVAL if it does not fit. */
int svc__runtime_dir(char *out, size_t n);

#endif
