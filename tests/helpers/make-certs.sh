#!/usr/bin/env bash
# make-certs.sh DIR [EXTRA_IP...] — writes the certificates the tls://
# transport tests use into DIR (created if missing), with the openssl command
# only. EC P-256 keys keep it fast enough to run per test run (no RSA).
#
#   ca.pem/.key                a self-signed CA the tests trust (10 years)
#   server.pem/.key            localhost, 127.0.0.1, ::1 and each EXTRA_IP,
#                              serverAuth, signed by ca (2 years)
#   client.pem/.key            CN=svc-test-client, clientAuth, signed by ca
#   other-ca.pem/.key          a second CA nobody trusts
#   other-client.pem/.key      a client cert signed by other-ca
#   other-server.pem/.key      a localhost server cert signed by other-ca
#   expired.pem/.key           a localhost server cert signed by ca whose
#                              validity ended on 2020-01-02
#   server-wronghost.pem/.key  signed by ca, for not-this-host.invalid only
#
# Keys are mode 0600, certificates 0644. Prints nothing on success; errors
# go to stderr with a nonzero exit.
set -euo pipefail

if (($# < 1)); then
  echo "usage: make-certs.sh DIR [EXTRA_IP...]" >&2
  exit 2
fi
out=$1
shift

server_san="DNS:localhost, IP:127.0.0.1, IP:::1"
for ip in "$@"; do
  # The address goes into an openssl config line: anything but an address's
  # characters could add or break entries there.
  if [[ ! $ip =~ ^[0-9A-Fa-f:.]+$ ]]; then
    echo "make-certs.sh: not an IP address: $ip" >&2
    exit 2
  fi
  server_san+=", IP:$ip"
done

mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Keys are written 0600 from the start, never readable by others for a moment.
umask 077

# Our own config: the system's one adds v3_ca (CA:TRUE) to every `req -x509`
# certificate, which would make the leaf certificates CAs too.
cat >"$tmp/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $server_san
[localhost_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost, IP:127.0.0.1
[wronghost_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:not-this-host.invalid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
# Only for the expired certificate: 'openssl ca' is the one signer in
# OpenSSL 3.0 that takes an explicit start and end date.
[ca]
default_ca = expired_signer
[expired_signer]
database = $tmp/index.txt
new_certs_dir = $tmp
rand_serial = yes
default_md = sha256
policy = any_policy
unique_subject = no
copy_extensions = none
[any_policy]
commonName = supplied
EOF
: >"$tmp/index.txt"

# cert NAME SUBJECT EXTENSIONS DAYS [SIGNER]: a new key and a certificate,
# self-signed without SIGNER, else signed by SIGNER.pem/.key, in one call.
cert() {
  local name=$1 subject=$2 ext=$3 days=$4 signer=${5:-}
  local sign=()
  if [[ -n $signer ]]; then
    sign=(-CA "$out/$signer.pem" -CAkey "$out/$signer.key")
  fi
  openssl req -config "$tmp/openssl.cnf" -x509 -newkey ec \
    -pkeyopt ec_paramgen_curve:P-256 -noenc -sha256 -days "$days" \
    -subj "$subject" -extensions "$ext" "${sign[@]}" \
    -keyout "$out/$name.key" -out "$out/$name.pem" 2>"$tmp/err" || {
    cat "$tmp/err" >&2
    echo "make-certs.sh: could not make $name.pem" >&2
    exit 1
  }
}

cert ca "/CN=svc-test-ca" ca_ext 3650
cert server "/CN=localhost" server_ext 730 ca
cert client "/CN=svc-test-client" client_ext 730 ca
cert server-wronghost "/CN=not-this-host.invalid" wronghost_ext 730 ca
cert other-ca "/CN=svc-test-other-ca" ca_ext 3650
cert other-client "/CN=svc-test-other-client" client_ext 730 other-ca
cert other-server "/CN=localhost" localhost_ext 730 other-ca

# The expired certificate: a request, then 'openssl ca' with dates in the past.
run_quiet() {
  "$@" >"$tmp/err" 2>&1 || {
    cat "$tmp/err" >&2
    echo "make-certs.sh: could not make expired.pem" >&2
    exit 1
  }
}
run_quiet openssl req -config "$tmp/openssl.cnf" -new -newkey ec \
  -pkeyopt ec_paramgen_curve:P-256 -noenc -subj "/CN=localhost" \
  -keyout "$out/expired.key" -out "$tmp/expired.csr"
run_quiet openssl ca -config "$tmp/openssl.cnf" -batch -notext \
  -cert "$out/ca.pem" -keyfile "$out/ca.key" -extensions localhost_ext \
  -startdate 20200101000000Z -enddate 20200102000000Z \
  -in "$tmp/expired.csr" -out "$out/expired.pem"

# Files that existed before keep their old mode when overwritten: set both.
names=(ca server client server-wronghost other-ca other-client other-server
  expired)
for n in "${names[@]}"; do
  chmod 0600 "$out/$n.key"
  chmod 0644 "$out/$n.pem"
done
