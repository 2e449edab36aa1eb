#!/usr/bin/env python3
"""Containment figures for docs/benchmarks.md: what a hostile plugin costs the server.

Runs one `switchboard` binary (SQLite, a temporary data dir, loopback only) with the
`fixture-hostile` plugin in the message path under default limits, then:

  1. resident memory after 300 messages that each try to fill `kv` with 10,000 values of
     64 KiB (`hostile:kv-fill 10000 65536`);
  2. bytes the server logs while 3 senders send `hostile:log 1000 4096` for 10 s;
  3. the wall time of single messages that wait forever, sleep 5 s, or ask for 64 MiB of
     random bytes.

Circuit breakers are switched off (`breaker_failures`, and for a server that has them
`breaker_scope_failures`, set very high) so that every message reaches the plugin and each
limit is measured on its own; with breakers on, the plugin stops being called for the
attacker after a few failures.

Usage: python3 loadtest/containment.py BINARY[,KEY=VALUE...] ...   (one line of figures per
binary; KEY=VALUE pairs are extra environment for that server, e.g.
`SWITCHBOARD_PLUGINS__BREAKER_SCOPE_FAILURES=1000000` for a server with scoped breakers).
Run the binaries being compared in one invocation, on one machine.
Needs `make fixtures` (target/wasm/wasm32-wasip2/release/fixture_hostile.wasm).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WASM = os.path.join(ROOT, "target/wasm/wasm32-wasip2/release/fixture_hostile.wasm")
PASSWORD = "containment-Figures-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, token=None, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(spec):
    binary, *extra = spec.split(",")
    work = tempfile.mkdtemp(prefix="containment-")
    plugin_dir = os.path.join(work, "plugins", "hostile")
    os.makedirs(plugin_dir)
    with open(os.path.join(plugin_dir, "plugin.toml"), "w") as f:
        f.write(
            'name = "hostile"\nversion = "0.1.0"\n'
            f'component = "{WASM}"\n'
            'failure_policy = "fail-open"\ncapabilities = ["log", "config", "kv"]\n'
            'hooks = ["message-pre-send"]\n'
        )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        SWITCHBOARD_LISTEN=f"127.0.0.1:{port}",
        SWITCHBOARD_DATA_DIR=os.path.join(work, "data"),
        SWITCHBOARD_PLUGINS__DIR=os.path.join(work, "plugins"),
        SWITCHBOARD_INITIAL_ADMIN_PASSWORD=PASSWORD,
        SWITCHBOARD_LIMITS__MESSAGES_PER_SECOND="100000",
        SWITCHBOARD_LIMITS__MESSAGE_BURST="100000",
        SWITCHBOARD_PLUGINS__BREAKER_FAILURES="1000000",
        RUST_LOG="info",
    )
    env.update(pair.split("=", 1) for pair in extra)
    log_path = os.path.join(work, "server.log")
    log = open(log_path, "wb")
    server = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log)
    try:
        for _ in range(200):
            try:
                if call(base, "GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        admin = call(base, "POST", "/api/v1/auth/login", body={"username": "admin", "password": PASSWORD})[1]["access_token"]
        tokens = []
        for i in range(3):
            call(base, "POST", "/api/v1/users", admin, {"name": f"u{i}", "password": PASSWORD})
            tokens.append(call(base, "POST", "/api/v1/auth/login", body={"username": f"u{i}", "password": PASSWORD})[1]["access_token"])
        room = call(base, "POST", "/api/v1/rooms", tokens[0], {"kind": "group", "name": "r", "members": []})[1]["id"]
        rooms = [room] + [
            call(base, "POST", "/api/v1/rooms", t, {"kind": "group", "name": f"r{i}", "members": []})[1]["id"]
            for i, t in enumerate(tokens[1:], 1)
        ]
        seq = [0]

        def send(token, room, body, timeout=60):
            seq[0] += 1
            started = time.monotonic()
            status, answer = call(base, "POST", f"/api/v1/rooms/{room}/messages", token,
                                  {"client_msg_id": f"m{seq[0]}-{threading.get_ident()}", "body": body}, timeout)
            return status, time.monotonic() - started

        for _ in range(50):
            send(tokens[0], room, "warm up")
        idle = rss_mib(server.pid)
        for _ in range(300):
            send(tokens[0], room, "hostile:kv-fill 10000 65536")
        time.sleep(2)
        hoard = rss_mib(server.pid)

        before = os.path.getsize(log_path)
        stop = time.monotonic() + 10

        def flood(i):
            while time.monotonic() < stop:
                send(tokens[i], rooms[i], "hostile:log 1000 4096")

        threads = [threading.Thread(target=flood, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log_mb = (os.path.getsize(log_path) - before) / 1e6

        waits = {}
        for name, body in [("wait-forever", "hostile:wait-forever"), ("sleep 5 s", "hostile:sleep 5000"),
                           ("64 MiB random", "hostile:random 67108864")]:
            try:
                status, took = send(tokens[1], rooms[1], body, timeout=20)
                waits[name] = f"{took * 1000:.0f} ms ({status})"
            except (TimeoutError, OSError):
                waits[name] = "no answer within 20 s"
        print(json.dumps({
            "binary": binary,
            "rss_idle_mib": round(idle),
            "rss_after_kv_hoard_mib": round(hoard),
            "log_mb_in_10s_3_senders": round(log_mb, 1),
            "single_message": waits,
        }))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            print(f"{binary}: did not stop within 30 s of SIGTERM", file=sys.stderr)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    for b in sys.argv[1:]:
        run(b)
