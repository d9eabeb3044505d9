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
        "tls": "tls://127.0.0.1:5203",
        "tls-server": "tls://0.0.0.0:5203?cert=/etc/svc/s.pem&key=/etc/svc/s.key",
        "tls-mtls": "tls://h:1?cert=/c.pem&key=/k.pem&client_ca=/ca.pem",
        "tls-client": "tls://host.example:5203?ca=/ca.pem&servername=svc.example",
        "tls-escaped": "tls://h:1?ca=/a%26b%3d%25.pem",
        "tls-nul-escape": "tls://h:1?ca=/a%00b",
        "tls-bad-escape": "tls://h:1?ca=/a%4",
        "tls-unknown-key": "tls://h:1?cafile=/x",
        "tls-repeated": "tls://h:1?ca=/x&ca=/y",
        "tls-empty-value": "tls://h:1?ca=",
        "tls-empty-query": "tls://h:1?",
        "tls-trailing-amp": "tls://h:1?ca=/x&",
        "tls-ipv6": "tls://[::1]:5203?ca=/x",
        "tcp-query": "tcp://h:1?ca=/x",
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
REGION_VERSION = 2
REGION_RING = 320  # sizeof(svc__region_hdr): five cache lines
SLOT_SIZE, SLOT_REP, SLOT_HDR, SLOT_FRAME_MAX = 512, 256, 8, 248
WHERE_INLINE, WHERE_LANE = 0, 1
RING_MAX = 4096
HDR_RING_SLOTS = 16        # offset of ring_slots in the header
HDR_REPLY_LANE_BUSY = 256  # line 4
MAX_MSG_LIMIT = 0xFFFFFFFF - 65536
PAGE = 4096

# fuzz_shm_header input (see the top of fuzz/fuzz_shm_header.c):
# byte 0 = file size (bits 0-2) | server max_payload (bits 3-5); byte 1 =
# seals (bits 0-1; bit 2 FUTURE_WRITE, bit 7 WRITE) | reply words left 0
# (bit 3); byte 2 = the handler's reply; then the header's magic, version,
# max_payload, ring_slots; then records.
FS_RING, FS_RING_LESS_PAGE, FS_MAX, FS_MAX_PLUS_PAGE, FS_0, FS_100, \
    FS_RING_PLUS_1, FS_RING_PLUS_4P = range(8)
MX_0, MX_64, MX_200, MX_224, MX_4K, MX_64K, MX_1M, MX_64M = \
    (i << 3 for i in range(8))
SEAL_CLIENT, SEAL_SHRINK, SEAL_NONE, SEAL_GROW = range(4)
FUTURE_WRITE, REPLY_WORDS_ZERO, SEAL_WRITE = 4, 8, 128
ECHO = 0xff

OP_POST, OP_RAW, OP_GROW, OP_SEAL, OP_PUNCH, OP_SERVE = range(6)
P_LIE, P_LANE, P_BAD_ID, P_UNPUBLISHED, P_NUL = 1, 2, 4, 8, 16
LATE_GROW, LATE_FUTURE_WRITE, LATE_WRITE, LATE_SEAL = range(4)
SERVE = bytes([OP_SERVE])


def reply_of(n):
    """The byte-2 selector for a reply of n bytes (even, < 256) or n KiB."""
    if n < 256:
        assert n % 2 == 0
        return n // 2
    assert n % 1024 == 0 and 1 <= n // 1024 <= 127
    return 0x7f + n // 1024


def shm_input(records=b"", size=FS_RING, mx=MX_64M, b1=SEAL_CLIENT,
              reply=reply_of(10), magic=REGION_MAGIC, version=REGION_VERSION,
              max_payload=64 << 20, slots=8):
    return (bytes([size | mx, b1, reply]) +
            struct.pack("<IIQI", magic, version, max_payload, slots) +
            records)


def post(seq, method_len=4, payload_len=5, fill=0, flags=0):
    return (bytes([OP_POST | flags << 3]) +
            struct.pack("<IB", seq, method_len) +
            payload_len.to_bytes(3, "little") + bytes([fill]))


def posts(first, last, **kw):
    return b"".join(post(s, **kw) for s in range(first, last + 1))


def raw(off, data):
    assert len(data) < 256
    return bytes([OP_RAW]) + struct.pack("<IB", off, len(data)) + data


def grow(pages):
    return bytes([OP_GROW, pages])


def seal(which):
    return bytes([OP_SEAL, which])


def punch(off, pages):
    return bytes([OP_PUNCH]) + struct.pack("<IH", off, pages)


def slot(seq, slots=8):
    return REGION_RING + (seq % slots) * SLOT_SIZE


def slot_frame(seq, fr, where=WHERE_INLINE):
    """A request half's bytes: seq word, where word, then the frame."""
    return struct.pack("<II", seq, where) + fr


def shm_seeds():
    u32 = lambda v: struct.pack("<I", v)
    return {
        # well-formed traffic
        "inline-call": shm_input(post(1) + SERVE),
        # frames at an offset in the lane, as requests written in place are
        # (flags 2: in the lane, at the offset in the fill byte), small and
        # large, then an ordinary lane request at offset 0
        "in-place-small": shm_input(post(1, fill=251, flags=2) + SERVE,
                                    reply=ECHO),
        "in-place-large": shm_input(post(1, 4, 70000, fill=251, flags=2) +
                                    SERVE + post(2, 255, 3000, flags=2) +
                                    SERVE + post(3, 4, 9000) + SERVE,
                                    reply=ECHO),
        "inline-echo": shm_input(post(1, payload_len=100) + SERVE,
                                 reply=ECHO),
        "inline-frame-248": shm_input(post(1, 4, SLOT_FRAME_MAX - 28) +
                                      SERVE, reply=ECHO),
        "batch": shm_input(post(1, 1, 0) + post(2, 4, 1) + post(3, 8, 100) +
                           post(4, 255, 0) + post(5, 4, 220) +
                           post(6, 4, 221) + SERVE, reply=ECHO),
        "batch-full-window": shm_input(posts(1, 4) + SERVE + posts(5, 8) +
                                       SERVE, slots=4, reply=reply_of(64)),
        "lane-request": shm_input(post(1, 8, 5000, fill=3) + post(2) +
                                  SERVE, reply=reply_of(16)),
        "lane-request-and-reply": shm_input(
            post(1, 4, 100000) + SERVE + post(2, 4, 300000, fill=9) + SERVE,
            reply=ECHO),
        "lane-reply": shm_input(post(1) + post(2) + SERVE,
                                reply=reply_of(16 << 10)),
        "reply-224-inline": shm_input(post(1) + SERVE, reply=reply_of(224)),
        "reply-226-lane": shm_input(post(1) + SERVE, reply=reply_of(226)),
        "small-frame-in-lane": shm_input(post(1, flags=P_LANE) + SERVE),
        "wrap-around": shm_input(
            posts(1, 2) + SERVE + post(3) + post(4, 4, 3000) + SERVE +
            posts(5, 6, payload_len=40) + SERVE, slots=2, reply=ECHO),
        "wrap-around-one-slot": shm_input(
            post(1) + SERVE + post(2, 4, 9000) + SERVE + post(3) + SERVE,
            slots=1, reply=ECHO),
        "ring-max-slots": shm_input(posts(1, 3) + SERVE, slots=RING_MAX),
        "largest-region": shm_input(post(1, 4, 65536) + SERVE, size=FS_MAX,
                                    mx=MX_64K, max_payload=65536, reply=ECHO),
        "peer-max-limit": shm_input(post(1, 4, 65536) + SERVE, mx=MX_64K,
                                    max_payload=MAX_MSG_LIMIT, reply=ECHO),
        "server-max-0": shm_input(post(1, 4, 0) + post(2, 4, 1) + SERVE,
                                  mx=MX_0, reply=ECHO),
        "payload-at-server-max": shm_input(
            post(1, 4, 64) + SERVE + post(2, 4, 65, flags=P_LIE) + SERVE,
            mx=MX_64, reply=ECHO),
        "reply-over-server-max": shm_input(post(1) + SERVE, mx=MX_200,
                                           reply=reply_of(1024)),
        "reply-words-zero": shm_input(post(1) + SERVE, b1=REPLY_WORDS_ZERO),
        "ring-file-plus-4-pages": shm_input(post(1, 4, 5000) + SERVE,
                                            size=FS_RING_PLUS_4P),
        "nul-in-method": shm_input(post(1, flags=P_NUL) + post(2) + SERVE),
        "unpublished": shm_input(post(1, flags=P_UNPUBLISHED) + post(2) +
                                 SERVE),
        # a lying client
        "bad-call-id": shm_input(post(1, flags=P_BAD_ID) + post(2) + SERVE),
        "method-len-0": shm_input(post(1, 0, 5) + SERVE),
        "where-bogus": shm_input(post(1, flags=P_LIE | P_LANE) + SERVE),
        "lane-not-grown": shm_input(post(1, 4, 500000, flags=P_LIE) +
                                    SERVE),
        "lane-longer-than-file": shm_input(
            grow(1) + post(1, 4, 500000, flags=P_LIE) + SERVE),
        "inline-frame-249": shm_input(raw(slot(1), slot_frame(
            1, header(REQUEST, method_len=4, payload_len=221) + b"echo")) +
            SERVE),
        "inline-frame-248-raw": shm_input(raw(slot(1), slot_frame(
            1, header(REQUEST, method_len=4, payload_len=220) + b"echo")) +
            SERVE),
        "reply-type-at-request": shm_input(
            raw(slot(1), slot_frame(1, frame(REPLY, payload=b"x"))) + SERVE),
        "lane-where-raw": shm_input(
            grow(1) + raw(slot(1), slot_frame(1, b"", WHERE_LANE)) +
            raw(REGION_RING + 8 * SLOT_SIZE + (PAGE - (REGION_RING +
                8 * SLOT_SIZE) % PAGE) % PAGE,
                frame(REQUEST, b"echo", b"in the lane")) + SERVE),
        "reply-lane-busy": shm_input(raw(HDR_REPLY_LANE_BUSY, u32(1)) +
                                     post(1) + SERVE, reply=reply_of(4096)),
        "ring-slots-changed": shm_input(raw(HDR_RING_SLOTS, u32(RING_MAX)) +
                                        posts(1, 3) + SERVE),
        "max-payload-changed": shm_input(
            raw(8, struct.pack("<Q", (1 << 64) - 1)) + post(1, 4, 300) +
            SERVE, reply=ECHO),
        "late-seal-future-write": shm_input(
            post(1, 4, 5000) + seal(LATE_FUTURE_WRITE) + SERVE,
            b1=SEAL_SHRINK),
        "late-seal-future-write-reply": shm_input(
            post(1) + seal(LATE_FUTURE_WRITE) + SERVE, b1=SEAL_SHRINK,
            reply=reply_of(8 << 10)),
        "late-seal-grow": shm_input(post(1) + seal(LATE_GROW) + SERVE,
                                    b1=SEAL_SHRINK, reply=reply_of(8 << 10)),
        "late-seal-refused": shm_input(post(1) + seal(LATE_GROW) + SERVE,
                                       reply=reply_of(8 << 10)),
        "punch-ring": shm_input(posts(1, 2) + punch(0, 1) + SERVE),
        "punch-lane": shm_input(post(1, 4, 5000) + punch(8192, 2) + SERVE),
        "grow-beyond-region": shm_input(grow(0) + post(1, 4, 5000) + SERVE,
                                        mx=MX_64K, max_payload=65536),
        # attach refusals
        "bad-magic": shm_input(post(1) + SERVE, magic=0),
        "bad-version": shm_input(post(1) + SERVE, version=1),
        "slots-0": shm_input(post(1) + SERVE, slots=0),
        "slots-3": shm_input(post(1) + SERVE, slots=3),
        "slots-over-max": shm_input(post(1) + SERVE, slots=2 * RING_MAX),
        "file-smaller-than-ring": shm_input(post(1) + SERVE, slots=64,
                                            size=FS_RING_LESS_PAGE),
        "peer-max-0": shm_input(post(1) + SERVE, max_payload=0),
        "peer-max-over-limit": shm_input(post(1) + SERVE,
                                         max_payload=MAX_MSG_LIMIT + 1),
        "peer-max-huge": shm_input(post(1) + SERVE,
                                   max_payload=(1 << 64) - 1),
        "size-0": shm_input(size=FS_0),
        "size-100": shm_input(size=FS_100),
        "size-ring-plus-1": shm_input(post(1) + SERVE, size=FS_RING_PLUS_1),
        "size-over-region": shm_input(post(1) + SERVE,
                                      size=FS_MAX_PLUS_PAGE),
        "unsealed": shm_input(post(1) + SERVE, b1=SEAL_NONE),
        "seal-grow": shm_input(post(1) + SERVE, b1=SEAL_GROW),
        "seal-write": shm_input(post(1) + SERVE, b1=SEAL_CLIENT | SEAL_WRITE),
        "seal-future-write": shm_input(post(1) + SERVE,
                                       b1=SEAL_CLIENT | FUTURE_WRITE),
        "truncated-record": shm_input(post(1) + SERVE + post(2)[:5]),
    }


# fuzz_replies input: byte 0 = calls sent - 1 (mod 64), byte 1 = the
# client's max_payload selector (16, 64, 4096, 64 MiB), then what the
# hostile server writes back. Calls are numbered 1, 2, ... on the
# connection they are sent on.
def replies_input(calls, stream, sel=3):
    return bytes([calls - 1, sel]) + stream


def replies_seeds():
    def rep(i, payload=b"x", status=0):
        return frame(REPLY, payload=payload, call_id=i, status=status)

    in_order = b"".join(rep(i) for i in range(1, 9))
    reverse = b"".join(rep(i) for i in range(8, 0, -1))
    return {
        "in-order": replies_input(8, in_order),
        "reverse": replies_input(8, reverse),
        "full-window": replies_input(
            64, b"".join(rep(i, bytes([i])) for i in range(1, 65))),
        "some-missing": replies_input(8, rep(2) + rep(5)),
        "unknown-id": replies_input(4, rep(1) + rep(99) + rep(2)),
        "id-zero-refusal": replies_input(4, rep(0, status=-11)),
        "duplicate": replies_input(4, rep(1) + rep(1) + rep(2)),
        "goaway-among-replies": replies_input(
            4, rep(1) + frame(GOAWAY, call_id=0) + rep(2) + rep(3) + rep(4)),
        "too-big-for-client": replies_input(4, rep(1, b"y" * 100) + rep(2),
                                            sel=1),
        "handler-errors": replies_input(
            3, rep(1, b"", status=7) + rep(2, b"", status=EHANDLER) + rep(3)),
        "request-instead": replies_input(2, frame(REQUEST, b"m", b"x")),
        "partial-tail": replies_input(3, rep(1) + rep(2)[:10]),
        "garbage": replies_input(2, b"HTTP/1.1 200 OK\r\n\r\n"),
    }


# Pipelined requests for fuzz_stream (byte 0 = max_payload selector: 0, 64,
# 4096, 64 MiB); written beside its hand-made seeds.
def stream_pipelined_seeds():
    def req(i, method=b"echo", payload=b"p"):
        return frame(REQUEST, method, payload, call_id=i)

    return {
        "sixty-four": bytes([3]) + b"".join(req(i, payload=bytes([i]) * i)
                                            for i in range(1, 65)),
        "mixed-sizes": bytes([2]) + b"".join(
            req(i, payload=b"z" * (i * 97 % 3000)) for i in range(1, 17)),
        "then-oversized": bytes([1]) + req(1) + req(2) + req(3, payload=b"q" * 65),
        "then-garbage": bytes([3]) + req(1) + req(2) + b"\xff" * 30,
        "fail-among-echoes": bytes([3]) + req(1) + req(2, b"fail") + req(3),
        # The method cache: names that only begin, end or hide the cached
        # one, built-ins, and switching back (issue 18).
        "method-cache": bytes([3]) + b"".join(
            req(i, m) for i, m in enumerate(
                [b"echo", b"echo\0x", b"ech", b"echoo", b"fail", b"echo",
                 b"svc.ping", b"svc.methods", b"svc.stats", b"svc.nope",
                 b"ECHO", b"echo"], 1)),
    }


GENERATORS = {"fuzz_frame": frame_seeds, "fuzz_url": url_seeds,
              "fuzz_shm_header": shm_seeds, "fuzz_replies": replies_seeds}
EXTRA = {"fuzz_stream": ("pipelined-", stream_pipelined_seeds)}


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
    targets = sys.argv[1:] or sorted(set(GENERATORS) | set(EXTRA))
    for t in targets:
        if t not in GENERATORS and t not in EXTRA:
            sys.exit(f"make_corpus.py: unknown target {t}")
        if t in GENERATORS:
            write(t, GENERATORS[t]())
        if t in EXTRA:
            prefix, fn = EXTRA[t]
            d = os.path.join(HERE, "corpus", t)
            for name, data in sorted(fn().items()):
                with open(os.path.join(d, prefix + name), "wb") as f:
                    f.write(data)
            print(f"{t}: {len(fn())} {prefix}* seeds")


if __name__ == "__main__":
    main()
