/* svc_echo.cc — libsvc under test: an echo server in a forked child
 * (svc_server_new / svc_server_method / svc_server_listen / svc_server_run)
 * and clients through svc_call (or svc_call_send / svc_call_recv with calls
 * in flight), over shm://, unix://, tcp:// and tls://. The echo handler
 * writes its reply in place with svc_reply_alloc (zero copy on shm). tls://
 * uses certificates this process makes when it first needs them. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "peers/peers.h"
#include "transport.h"

#ifndef SVC_BENCH_NO_LIBSVC
#include "svc.h"
#endif

namespace bench {

#ifdef SVC_BENCH_NO_LIBSVC

std::unique_ptr<Transport> NewSvcTransport(const std::string &,
                                           const ServerOptions &) {
  return nullptr;
}

#else

namespace {

/* "echo": the reply is the request, copied once into the reply space. */
int svc_echo_handler(void *, const void *req, size_t len, svc_reply *r) {
  void *out = svc_reply_alloc(r, len);
  if (!out)
    return SVC_ENOMEM;
  memcpy(out, req, len);
  return 0;
}

/* "burn": spends the CPU microseconds named by the request's first 4 bytes
 * (native order), then replies with the request. For issue 6's CPU-bound
 * handler benchmark (1 vs 2 worker processes). */
int svc_burn_handler(void *, const void *req, size_t len, svc_reply *r) {
  uint32_t us = 0;
  if (len >= sizeof us)
    memcpy(&us, req, sizeof us);
  uint64_t end = ThreadCpuNs() + (uint64_t)us * 1000;
  while (ThreadCpuNs() < end) {
  }
  return svc_reply_set(r, req, len);
}

/* "sum": reads the whole request where it lies and replies with its sum
 * (8 bytes): a one-way transfer of the request, for issue 11's bandwidth
 * row. */
int svc_sum_handler(void *, const void *req, size_t len, svc_reply *r) {
  uint64_t sum = ReadAll(req, len);
  return svc_reply_set(r, &sum, sizeof sum);
}

std::string svc_err(const char *what, int rc) {
  return std::string(what) + ": " + svc_strerror(rc);
}

/* svc_err with the library's own sentence when it has one (for SVC_ETLS:
 * the handshake's or the certificate's reason). */
std::string svc_err_text(const char *what, int rc, const char *text) {
  return text && *text ? std::string(what) + ": " + text : svc_err(what, rc);
}

/* A URL query value: '%', '&' and '=' percent-encoded (svc.h), so that any
 * $TMPDIR makes a valid tls:// URL. */
std::string svc_query_value(const std::string &v) {
  std::string out;
  for (char ch : v) {
    if (ch == '%' || ch == '&' || ch == '=') {
      char hex[4];
      snprintf(hex, sizeof hex, "%%%02X", (unsigned char)ch);
      out += hex;
    } else {
      out += ch;
    }
  }
  return out;
}

/* The tls:// rows' certificates (issue 16): the tests' own script
 * (tests/helpers/make-certs.sh: a CA, and a server certificate for
 * 127.0.0.1), run once per benchmark process into its private runtime
 * directory under $TMPDIR, so no key outlives the run and the numbers are
 * for the same EC P-256 certificates the tests use. The directory, or ""
 * with *err. */
std::string svc_tls_certs(std::string *err) {
  static std::string made;
  if (!made.empty())
    return made;
  if (RuntimeDir().empty()) {
    *err = "tls:// certificates: no runtime directory (SetUpRuntimeDir)";
    return "";
  }
  std::string dir = RuntimeDir() + "/certs";
  pid_t pid = ForkChild([&] {
    execlp("bash", "bash", SVC_BENCH_MAKE_CERTS, dir.c_str(), (char *)nullptr);
    perror("exec bash " SVC_BENCH_MAKE_CERTS);
    return 127;
  });
  if (pid < 0) {
    *err = std::string("tls:// certificates: fork: ") + strerror(errno);
    return "";
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      *err = std::string("tls:// certificates: waitpid: ") + strerror(errno);
      return "";
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *err = "tls:// certificates: " SVC_BENCH_MAKE_CERTS " " + dir +
           " failed (its message is above)";
    return "";
  }
  made = dir;
  return made;
}

/* The server child: reports "OK <url>" or "ERR <why>" once it listens;
 * <url> is the one clients dial (for tls://: with the CA they trust).
 * certs: svc_tls_certs' directory, for tls:// only. */
int svc_serve_child(const std::string &scheme, const ServerOptions &opts,
                    size_t max_len, const std::string &certs,
                    const ReadyFn &report) {
  if (opts.workers > 0) {
    std::string w = std::to_string(opts.workers);
    setenv("SVC_WORKERS_MIN", w.c_str(), 1);
    setenv("SVC_WORKERS_MAX", w.c_str(), 1);
  }
  if (!opts.stats)
    setenv("SVC_STATS", "off", 1);
  std::string name = UniqueName("bench");
  svc_server *s = nullptr;
  int rc = svc_server_new(name.c_str(), &s);
  if (rc) {
    report("ERR " + svc_err("svc_server_new", rc));
    return 1;
  }
  std::string url;
  if ((rc = svc_server_method(s, "echo", svc_echo_handler, nullptr)) ||
      (rc = svc_server_method(s, "burn", svc_burn_handler, nullptr)) ||
      (rc = svc_server_method(s, "sum", svc_sum_handler, nullptr))) {
    report("ERR " + svc_err("svc_server_method", rc));
    goto fail;
  }
  if (opts.max_threads > 0 &&
      (rc = svc_server_set_max_threads(s, opts.max_threads))) {
    report("ERR " + svc_err("svc_server_set_max_threads", rc));
    goto fail;
  }
  if (opts.wait_block && (rc = svc_server_set_wait(s, SVC_WAIT_BLOCK))) {
    report("ERR " + svc_err("svc_server_set_wait", rc));
    goto fail;
  }
  /* Room for the largest payload plus headers. */
  if (max_len + 4096 > SVC_DEFAULT_MAX_MSG &&
      (rc = svc_server_set_max_msg(s, max_len + 4096))) {
    report("ERR " + svc_err("svc_server_set_max_msg", rc));
    goto fail;
  }
  if (scheme == "tcp" || scheme == "tls") {
    /* tls://: the server presents its certificate, clients check it
     * against the CA. */
    std::string serve_query, dial_query;
    if (scheme == "tls") {
      serve_query = "?cert=" + svc_query_value(certs + "/server.pem") +
                    "&key=" + svc_query_value(certs + "/server.key");
      dial_query = "?ca=" + svc_query_value(certs + "/ca.pem");
    }
    /* A port derived from the pid, and the next ones while taken. */
    unsigned base = (unsigned)getpid() * 7919u % 40000u;
    rc = SVC_EADDRINUSE;
    for (int i = 0; i < 64 && rc == SVC_EADDRINUSE; i++) {
      std::string at = scheme + "://127.0.0.1:" +
                       std::to_string(20000 + (base + (unsigned)i) % 40000u);
      url = at + serve_query;
      rc = svc_server_listen(s, url.c_str());
      if (rc == 0)
        url = at + dial_query;
    }
  } else {
    url = scheme == "shm" ? "shm://" + name
                          : "unix://" + RuntimeDir() + "/" + name + ".sock";
    rc = svc_server_listen(s, url.c_str());
  }
  if (rc) {
    report("ERR " + svc_err_text(("svc_server_listen " + url).c_str(), rc,
                                 svc_server_last_error_text(s)));
    goto fail;
  }
  report("OK " + url);
  rc = svc_server_run(s);
  svc_server_free(s);
  return rc ? 1 : 0;
fail:
  svc_server_free(s);
  return 1;
}

class SvcConn : public Conn {
public:
  SvcConn(svc_client *c, std::string method, bool prepared)
      : c_(c), method_(std::move(method)), prepared_(prepared) {}
  ~SvcConn() override { svc_client_close(c_); }
  /* svc_call copies the caller's request into the message; a prepared call
   * writes it where it travels (svc_request_alloc), which is the one copy
   * the raw baselines make too. */
  int Call(const void *req, size_t len, const void **resp, size_t *resp_len,
           std::string *err) override {
    int rc;
    if (prepared_) {
      void *p = svc_request_alloc(c_, len);
      if (!p) {
        *err = "svc_request_alloc failed";
        return -1;
      }
      memcpy(p, req, len);
      rc = svc_call_prepared(c_, method_.c_str(), len, resp, resp_len);
    } else {
      rc = svc_call(c_, method_.c_str(), req, len, resp, resp_len);
    }
    if (rc) {
      *err = svc_err_text(prepared_ ? "svc_call_prepared" : "svc_call", rc,
                          svc_client_last_error_text(c_));
      return -1;
    }
    return 0;
  }

  /* Calls in flight as the API means them: svc_call_send until window
   * calls are in flight, then one more for every call svc_call_recv hands
   * back; once until_ns passes, only receives. SVC_EAGAIN from a send (the
   * library's own window is full) means receive first. */
  int Pipeline(const void *req, size_t len, int window, uint64_t until_ns,
               uint64_t *calls, std::string *err) override {
    Deadline deadline(until_ns);
    bool sending = true;
    int in_flight = 0;
    uint64_t id;
    for (;;) {
      while (sending && in_flight < window) {
        int rc = svc_call_send(c_, method_.c_str(), req, len, &id);
        if (rc == SVC_EAGAIN && in_flight > 0)
          break;
        if (rc) {
          *err = svc_err("svc_call_send", rc);
          return -1;
        }
        in_flight++;
      }
      if (in_flight == 0)
        return 0;
      const void *resp;
      size_t resp_len;
      int rc = svc_call_recv(c_, -1, &id, &resp, &resp_len);
      if (rc) {
        *err = svc_err("svc_call_recv", rc);
        return -1;
      }
      in_flight--;
      if (!ReplyMatches(req, len, resp, resp_len)) {
        *err = "reply differs from request";
        return -1;
      }
      ++*calls;
      if (sending && deadline.Passed())
        sending = false;
    }
  }

private:
  svc_client *c_;
  std::string method_;
  bool prepared_;
};

class SvcTransport : public Transport {
public:
  SvcTransport(const std::string &scheme, const ServerOptions &opts,
               bool prepared)
      : scheme_(scheme), opts_(opts), prepared_(prepared) {}
  ~SvcTransport() override { Stop(); }

  bool Start(int, size_t max_len, std::string *err) override {
    Stop();
    max_len_ = max_len;
    std::string certs;
    if (scheme_ == "tls" && (certs = svc_tls_certs(err)).empty())
      return false;
    pid_ = ForkServer(
        [&](const ReadyFn &ready) {
          return svc_serve_child(scheme_, opts_, max_len, certs, ready);
        },
        &url_, err);
    return pid_ > 0;
  }

  std::unique_ptr<Conn> Connect(int, std::string *err) override {
    svc_client *c = nullptr;
    char why[256];
    int rc = svc_client_open_ex(url_.c_str(), &c, why, sizeof why);
    if (rc) {
      *err = svc_err_text(("svc_client_open " + url_).c_str(), rc, why);
      return nullptr;
    }
    if (max_len_ + 4096 > SVC_DEFAULT_MAX_MSG &&
        (rc = svc_client_set_max_msg(c, max_len_ + 4096))) {
      svc_client_close(c);
      *err = svc_err("svc_client_set_max_msg", rc);
      return nullptr;
    }
    if (opts_.wait_block && (rc = svc_client_set_wait(c, SVC_WAIT_BLOCK))) {
      svc_client_close(c);
      *err = svc_err("svc_client_set_wait", rc);
      return nullptr;
    }
    return std::make_unique<SvcConn>(c, opts_.method, prepared_);
  }

  pid_t server_pid() const override { return pid_; }

  void Stop() override {
    /* SIGTERM lets svc_server_run return and remove its socket files. */
    StopChild(pid_, SIGTERM, 2000);
    pid_ = -1;
  }

private:
  std::string scheme_;
  ServerOptions opts_;
  bool prepared_; /* clients write requests in place */
  size_t max_len_ = 0;
  pid_t pid_ = -1;
  std::string url_;
};

} // namespace

std::unique_ptr<Transport> NewSvcTransport(const std::string &scheme,
                                           const ServerOptions &opts) {
  if (scheme == "shm-prep") /* requests written in place */
    return std::make_unique<SvcTransport>("shm", opts, true);
  if (scheme != "shm" && scheme != "unix" && scheme != "tcp" && scheme != "tls")
    return nullptr;
  return std::make_unique<SvcTransport>(scheme, opts, false);
}

#endif /* SVC_BENCH_NO_LIBSVC */

/* The one place that lists the transports. */
std::vector<std::string> TransportNames() {
  std::vector<std::string> v = {"pipe", "unix", "tcp", "futex", "spin"};
#ifndef SVC_BENCH_NO_LIBSVC
  for (const char *s :
       {"svc-shm", "svc-shm-prep", "svc-unix", "svc-tcp", "svc-tls"})
    v.push_back(s);
#endif
  return v;
}

std::unique_ptr<Transport> MakeTransport(const std::string &name,
                                         const ServerOptions &opts) {
  if (name.compare(0, 4, "svc-") == 0)
    return NewSvcTransport(name.substr(4), opts);
  if (auto peer = NewPeerTransport(name))
    return peer;
  return NewRawTransport(name);
}

} // namespace bench
