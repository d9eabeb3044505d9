/* echo_server.c — the smallest libsvc service: one method, "echo", that
 * returns its request, served over shm://NAME, unix:///tmp/svc-NAME.sock and
 * tcp://127.0.0.1:PORT at once.
 *   echo_server [NAME [PORT]]   (defaults: $SVC_SERVICE_NAME or "echo",
 *                                $SVC_SERVICE_PORT or 5201) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <svc.h>

static int echo(void *ctx, const void *req, size_t len, svc_reply *reply) {
  (void)ctx;
  void *out = svc_reply_alloc(reply, len); /* zero copy on shm:// */
  if (!out)
    return SVC_ETOOBIG;
  memcpy(out, req, len);
  return 0;
}

static const char *arg_or_env(int argc, char **argv, int i, const char *env,
                              const char *def) {
  if (argc > i)
    return argv[i];
  const char *v = getenv(env);
  return v && *v ? v : def;
}

int main(int argc, char **argv) {
  const char *name = arg_or_env(argc, argv, 1, "SVC_SERVICE_NAME", "echo");
  const char *port = arg_or_env(argc, argv, 2, "SVC_SERVICE_PORT", "5201");
  char urls[3][256];
  snprintf(urls[0], sizeof urls[0], "shm://%s", name);
  snprintf(urls[1], sizeof urls[1], "unix:///tmp/svc-%s.sock", name);
  snprintf(urls[2], sizeof urls[2], "tcp://127.0.0.1:%s", port);

  svc_server *s;
  int rc = svc_server_new(name, &s);
  if (rc == 0)
    rc = svc_server_method(s, "echo", echo, NULL);
  for (int i = 0; i < 3 && rc == 0; i++)
    if ((rc = svc_server_listen(s, urls[i])) == 0)
      fprintf(stderr, "echo_server: listening on %s\n", urls[i]);
  if (rc == 0)
    rc = svc_server_run(s); /* until SIGTERM / SIGINT */
  if (rc < 0)
    fprintf(stderr, "echo_server: %s\n", svc_strerror(rc));
  svc_server_free(s);
  return rc < 0 ? 1 : 0;
}
