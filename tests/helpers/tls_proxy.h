// tls_proxy.h — raw byte access to a tls:// server for fault-injection
// tests: TlsRawConnect gives the test a plain socket that behaves like
// ConnectTcp's, while a thread behind it speaks TLS 1.3 to the server. The
// tests can then write half frames, garbage or nothing at all over TLS
// without an OpenSSL state machine of their own.
#ifndef SVC_TESTS_TLS_PROXY_H
#define SVC_TESTS_TLS_PROXY_H

#include <string>

namespace svctest {

// Connects to 127.0.0.1:port, completes a TLS 1.3 handshake (the server's
// certificate must chain to ca_file and name IP 127.0.0.1; cert_file and
// key_file, if given, are the client's certificate and key; an empty key_file
// means the key is in cert_file) and returns a blocking, close-on-exec
// AF_UNIX stream socket that carries the plaintext both ways, or -1 if the
// connect or the handshake failed (within 10 s; TlsLastConnectError() says
// why) with nothing left open.
//
// The returned fd is the caller's to close. Behaves like TCP:
//  - shutdown(fd, SHUT_WR) or close(fd) sends close_notify and a TCP FIN
//    after everything written so far (after a close, for at most 10 s of a
//    server that does not read); reading goes on after SHUT_WR.
//  - the server's close_notify, FIN, reset or a TLS error reads as EOF; if
//    the connection broke, later writes fail with EPIPE (use MSG_NOSIGNAL).
//  - close(fd) with the server still sending throws its data away.
// TLS 1.3 clients finish their handshake before the server has checked the
// client certificate: a rejected or missing client certificate does not
// return -1 but reads as EOF right after.
int TlsRawConnect(int port, const std::string &ca_file,
                  const std::string &cert_file = "",
                  const std::string &key_file = "");

// Why the calling thread's last TlsRawConnect returned -1 ("" after a
// success): the connect errno or the OpenSSL and verification errors.
const std::string &TlsLastConnectError();

// Proxy threads still running. Each ends shortly after both directions are
// finished, so a leak check in the test process waits for 0 first, e.g.
// Eventually([] { return TlsProxyThreads() == 0; }, 5000).
int TlsProxyThreads();

} // namespace svctest

#endif
