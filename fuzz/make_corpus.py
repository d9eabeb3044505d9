#!/usr/bin/env python3
"""make_corpus.py — writes the hand-made seed corpora in fuzz/corpus/<target>/
(valid inputs and edge cases), so they are reproducible and reviewable.

    fuzz/make_corpus.py            # rewrite the seeds of every target
    fuzz/make_corpus.py fuzz_url   # just one target

Only files named seed-* are written; anything else in a corpus directory
(regression inputs from fixed crashes, named crash-* / regress-*) is kept.
The input layouts are described at the top of each harness."""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- frame layout (libsvc/src/frame.h) ----
MAGIC = 0x31435653
VERSION = 1
REQUEST, REPLY, GOAWAY = 1, 2, 3
EHANDLER, EPROTO = -9, -8


def header(ftype, call_id=1, status=0, method_len=0, payload_len=0,
           flags=0, version=VERSION, magic=MAGIC, reserved=0):
    return struct.pack("<IBBBBIiII", magic, version, ftype, flags, reserved,
                       call_id, status, method_len, payload_len)


def frame(ftype, method=b"", payload=b"", call_id=1, status=0, **kw):
    return header(ftype, call_id, status, len(method), len(payload),
                  **kw) + method + payload


# fuzz_frame input: byte 0 = max_payload selector (low 3 bits: 0, 1, 64,
# 4096, 65536, 64 MiB, 4 GiB-1, SIZE_MAX) | round trips - 1 (high 2 bits),
# bytes 1..8 = chunk-size schedule (c < 200: c + 1 bytes, else
# (c - 199) * 256), then the stream.
SEL_0, SEL_1, SEL_64, SEL_4K, SEL_64K, SEL_64M, SEL_4G, SEL_MAX = range(8)
ONE_BYTE = bytes([0] * 8)
MIXED = bytes([0, 2, 23, 24, 5, 200, 1, 63])
BIG = bytes([210] * 8)


def frame_input(sel, sched, stream, trips=1):
    return bytes([sel | (trips - 1) << 6]) + sched + stream


def frame_seeds():
    req = frame(REQUEST, b"echo", b"hello")
    rep = frame(REPLY, payload=b"hello")
    bye = frame(GOAWAY, call_id=0)
    ok_small = frame(REPLY, payload=b"x" * 64, call_id=7)
    return {
        "request": frame_input(SEL_64M, ONE_BYTE, req),
        "request-reply-goaway": frame_input(SEL_64M, MIXED, req + rep + bye,
                                            trips=3),
        "reply-handler-error": frame_input(
            SEL_4K, MIXED, frame(REPLY, call_id=9, status=42)),
        "reply-svc-error": frame_input(
            SEL_4K, MIXED, frame(REPLY, call_id=9, status=EHANDLER)),
        "many-replies": frame_input(
            SEL_4K, BIG, b"".join(frame(REPLY, payload=bytes([i]) * i,
                                        call_id=i) for i in range(12))),
        "method-255": frame_input(SEL_64K, MIXED,
                                  frame(REQUEST, b"m" * 255, b"p" * 300)),
        "payload-at-max": frame_input(SEL_64, MIXED, ok_small),
        "payload-over-max": frame_input(SEL_64, MIXED,
                                        frame(REPLY, payload=b"x" * 65)),
        "max-0-empty-payload": frame_input(SEL_0, ONE_BYTE,
                                           frame(REQUEST, b"svc.ping")),
        "huge-length-need-more": frame_input(
            SEL_MAX, MIXED, header(REPLY, payload_len=0xFFFFFFFF) + b"abc"),
        "huge-4g-minus-1": frame_input(
            SEL_4G, MIXED, header(REQUEST, method_len=255,
                                  payload_len=0xFFFFFFFF)),
        "partial-header": frame_input(SEL_64M, ONE_BYTE, req[:13]),
        "partial-payload": frame_input(SEL_64M, MIXED, req + rep[:-2]),
        "bad-magic": frame_input(SEL_64M, MIXED,
                                 header(REPLY, magic=0x31435654) + b"xx"),
        "bad-version": frame_input(SEL_64M, MIXED, frame(REPLY, version=2)),
        "flags-set": frame_input(SEL_64M, MIXED, frame(REPLY, flags=1)),
        "reserved-set": frame_input(SEL_64M, MIXED, frame(REPLY, reserved=1)),
        "request-no-method": frame_input(SEL_64M, MIXED,
                                         frame(REQUEST, b"", b"x")),
        "request-method-256": frame_input(
            SEL_64M, MIXED, header(REQUEST, method_len=256) + b"m" * 256),
        "request-with-status": frame_input(
            SEL_64M, MIXED, frame(REQUEST, b"echo", status=1)),
        "reply-with-method": frame_input(SEL_64M, MIXED,
                                         frame(REPLY, b"echo", b"x")),
        "goaway-with-payload": frame_input(SEL_64M, MIXED,
                                           frame(GOAWAY, payload=b"x")),
        "type-0-and-4": frame_input(SEL_64M, MIXED, frame(0) + frame(4)),
        "empty-stream": frame_input(SEL_64M, MIXED, b""),
    }


# fuzz_url input: the URL text (cut at the first NUL).
def url_seeds():
    name64 = "n" * 64
    path107 = "/" + "p" * 106
    urls = {
        "shm": "shm://echo",
        "shm-one-char": "shm://a",
        "shm-name-64": "shm://" + name64,
        "shm-name-65": "shm://" + name64 + "x",
        "shm-dot-first": "shm://.hidden",
        "shm-all-chars": "shm://Ab9._-z",
        "shm-empty": "shm://",
        "shm-slash": "shm://a/b",
        "unix": "unix:///tmp/svc/echo.sock",
        "unix-root": "unix:///",
        "unix-relative": "unix://echo.sock",
        "unix-path-107": "unix://" + path107,
        "unix-path-108": "unix://" + path107 + "p",
        "tcp": "tcp://127.0.0.1:5201",
        "tcp-name": "tcp://localhost:1",
        "tcp-port-max": "tcp://h:65535",
        "tcp-port-over": "tcp://h:65536",
        "tcp-port-0": "tcp://h:0",
        "tcp-port-leading-0": "tcp://h:080",
        "tcp-ipv6": "tcp://[::1]:80",
        "tcp-ipv6-zone": "tcp://[fe80::1%eth0]:8080",
        "tcp-ipv6-bare": "tcp://::1:80",
        "tcp-ipv6-unclosed": "tcp://[::1:80",
        "tcp-no-host": "tcp://:80",
        "tcp-no-port": "tcp://h:",
        "tcp-host-255": "tcp://" + "h" * 255 + ":1",
        "other-scheme": "http://example.com:80",
    }
    seeds = {k: v.encode() for k, v in urls.items()}
    # after a NUL: $SVC_RUNTIME_DIR for svc__runtime_dir and the rendezvous
    # path (empty = unset, /tmp/svc-UID)
    seeds["nul-inside"] = b"shm://echo\0junk"
    seeds["rundir"] = b"shm://echo\0/run/user/1000/svc"
    seeds["rundir-unset"] = b"shm://echo\0"
    seeds["rundir-sock-fits"] = b"shm://" + b"n" * 64 + b"\0/" + b"d" * 36
    seeds["rundir-sock-too-long"] = b"shm://" + b"n" * 64 + b"\0/" + b"d" * 37
    seeds["rundir-too-long"] = b"shm://a\0/" + b"d" * 107
    seeds["rundir-tcp"] = b"tcp://h:1\0/tmp/x"
    return seeds


# ---- shm region layout (libsvc/src/region.h) ----
REGION_MAGIC = 0x47455253
REGION_VERSION = 1
REGION_DATA = 192  # sizeof(svc__region_hdr): three cache lines
RESP_OFF_AT = 144  # line 2: resp_seq, server_sleeping, taken_seq, closing
PAGE = 4096


def region_hdr(max_payload=64 << 20, magic=REGION_MAGIC,
               version=REGION_VERSION, resp_off=0):
    h = bytearray(REGION_DATA)
    struct.pack_into("<IIQ", h, 0, magic, version, max_payload)
    struct.pack_into("<Q", h, RESP_OFF_AT, resp_off)
    return bytes(h)


def reply_off(req_size):
    return (REGION_DATA + req_size + 63) & ~63


# fuzz_shm_header input: byte 0 = file size (bits 0-2: 1, 2, 4, 8, 16 pages,
# 0, 100 bytes, page + 1) | server max_payload (bits 3-5: 0, 64, 4096,
# 65536, 1 MiB, 64 MiB...); byte 1 = seals (bits 0-1: SHRINK|SEAL, SHRINK,
# none, SHRINK|GROW; bit 2 FUTURE_WRITE; bit 7 WRITE) | grow by 2^n after
# attach (bits 3-5) | read the reply at resp_off too (bit 6); byte 2 = reply
# payload / 64; then the file's first bytes.
SZ_1P, SZ_2P, SZ_4P, SZ_8P, SZ_16P, SZ_0, SZ_100, SZ_P1 = range(8)
MX_0, MX_64, MX_4K, MX_64K, MX_1M, MX_64M = (i << 3 for i in range(6))
SEAL_CLIENT, SEAL_SHRINK, SEAL_NONE, SEAL_GROW = range(4)
FUTURE_WRITE, READ_REPLY, SEAL_WRITE = 4, 64, 128


def grow(n):
    return n << 3


def shm_input(size, mx, b1, reply64, content):
    return bytes([size | mx, b1, reply64]) + content


def shm_seeds():
    req = frame(REQUEST, b"echo", b"hello")
    ok = region_hdr() + req
    big = region_hdr() + frame(REQUEST, b"echo", b"z" * 5000)
    rep_at = reply_off(len(req))
    with_reply = bytearray(region_hdr(resp_off=rep_at) + req)
    with_reply += bytes(rep_at - len(with_reply)) + frame(REPLY, payload=b"ok")
    return {
        "request": shm_input(SZ_1P, MX_64M, SEAL_CLIENT, 1, ok),
        "request-shrink-only": shm_input(SZ_2P, MX_4K, SEAL_SHRINK, 0, ok),
        "request-and-reply": shm_input(SZ_1P, MX_64M,
                                       SEAL_CLIENT | READ_REPLY, 2,
                                       bytes(with_reply)),
        "big-request-grown": shm_input(SZ_1P, MX_1M, SEAL_CLIENT | grow(1),
                                       0, big),
        "big-request-not-grown": shm_input(SZ_1P, MX_1M, SEAL_CLIENT, 0, big),
        "big-reply-needs-growth": shm_input(SZ_1P, MX_1M, SEAL_CLIENT, 255, ok),
        "big-reply-seal-grow": shm_input(SZ_1P, MX_1M, SEAL_GROW, 255, ok),
        "payload-over-peer-max": shm_input(
            SZ_1P, MX_64M, SEAL_CLIENT, 0, region_hdr(max_payload=2) + req),
        "payload-over-server-max": shm_input(SZ_1P, MX_0, SEAL_CLIENT, 0, ok),
        "peer-max-huge": shm_input(
            SZ_1P, MX_64K, SEAL_CLIENT, 0,
            region_hdr(max_payload=(1 << 64) - 1) + req),
        "reply-type-at-request": shm_input(
            SZ_1P, MX_64M, SEAL_CLIENT, 0,
            region_hdr() + frame(REPLY, payload=b"x")),
        "resp-off-huge": shm_input(
            SZ_1P, MX_64M, SEAL_CLIENT | READ_REPLY, 0,
            region_hdr(resp_off=(1 << 64) - 1) + req),
        "resp-off-zero": shm_input(SZ_1P, MX_64M, SEAL_CLIENT | READ_REPLY, 0,
                                   region_hdr(resp_off=0) + req),
        "resp-off-end": shm_input(SZ_16P, MX_64K, SEAL_CLIENT | READ_REPLY, 0,
                                  region_hdr(resp_off=16 * PAGE - 24) + req),
        "bad-magic": shm_input(SZ_1P, MX_64M, SEAL_CLIENT, 0,
                               region_hdr(magic=0) + req),
        "bad-version": shm_input(SZ_1P, MX_64M, SEAL_CLIENT, 0,
                                 region_hdr(version=2) + req),
        "unsealed": shm_input(SZ_1P, MX_64M, SEAL_NONE, 0, ok),
        "seal-write": shm_input(SZ_1P, MX_64M, SEAL_CLIENT | SEAL_WRITE, 0,
                                ok),
        "seal-future-write": shm_input(SZ_1P, MX_64M,
                                       SEAL_CLIENT | FUTURE_WRITE, 0, ok),
        "size-0": shm_input(SZ_0, MX_64M, SEAL_CLIENT, 0, b""),
        "size-100": shm_input(SZ_100, MX_64M, SEAL_CLIENT, 0, ok[:100]),
        "size-page-plus-1": shm_input(SZ_P1, MX_64M, SEAL_CLIENT, 0, ok),
        "size-over-reserved": shm_input(SZ_16P, MX_0, SEAL_CLIENT, 0, ok),
    }


GENERATORS = {"fuzz_frame": frame_seeds, "fuzz_url": url_seeds,
              "fuzz_shm_header": shm_seeds}


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.unlink(os.path.join(d, f))
    for name, data in sorted(seeds.items()):
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seeds)} seeds in {os.path.relpath(d)}")


def main():
    targets = sys.argv[1:] or sorted(GENERATORS)
    for t in targets:
        if t not in GENERATORS:
            sys.exit(f"make_corpus.py: unknown target {t}")
        write(t, GENERATORS[t]())


if __name__ == "__main__":
    main()
