#!/usr/bin/env python3
"""Amplification before/after: STUN answers and one RequestConnect.
usage: python3 benches/amplification.py SERVER_BIN PEER_BIN TCP_PORT UDP_PORT

Starts SERVER_BIN on 127.0.0.1, sends STUN requests from one socket, then
starts PEER_BIN (--plain), registers a caller whose 15 endpoints are
sockets on 127.0.0.2-16 (grpcurl, over reflection), calls RequestConnect
once and counts for 12 s what the peer sends there. Bounded: 1,002 STUN
requests, one RequestConnect, 12 s."""
import json, os, socket, struct, subprocess, sys, time, uuid, select

server_bin, peer_bin, tcp, udp = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
env = dict(os.environ, RUST_LOG="warn")
srv = subprocess.Popen([server_bin, "--listen", f"127.0.0.1:{tcp}", "--udp-listen", f"127.0.0.1:{udp}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
time.sleep(1.5)
res = {}
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.settimeout(0.5)
    def req(extra=b""):
        return struct.pack(">HHI", 1, len(extra), 0x2112A442) + os.urandom(12) + extra
    def ask(b):
        s.sendto(b, ("127.0.0.1", udp))
        try: return len(s.recv(2048))
        except socket.timeout: return 0
    res["stun_binding"] = (20, ask(req()))
    res["stun_unknown_attr"] = (24, ask(req(b"\x7f\x01\x00\x00")))
    time.sleep(1.1)
    n = 1000; out = 0; cnt = 0
    for _ in range(n): s.sendto(req(), ("127.0.0.1", udp))
    s.settimeout(0.5)
    while True:
        try: out += len(s.recv(2048)); cnt += 1
        except socket.timeout: break
    res["stun_flood_1000_from_one_source"] = {"bytes_in": 20 * n, "answers": cnt, "bytes_out": out}
    # One RequestConnect with 15 attacker endpoints, a real peer as the target.
    victims = []
    for i in range(2, 17):
        v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.bind((f"127.0.0.{i}", 45000)); v.setblocking(False); victims.append(v)
    peer = subprocess.Popen([peer_bin, "--plain", "--server", f"http://127.0.0.1:{tcp}", "--username", "victim", "--bind", "127.0.0.1", "--ephemeral"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(3)
    g = lambda method, body: json.loads(subprocess.run(["grpcurl", "-plaintext", "-d", json.dumps(body), f"127.0.0.1:{tcp}", f"p2pchat.signaling.v1.Signaling/{method}"], capture_output=True, text=True, check=True).stdout or "{}")
    me = str(uuid.uuid4())
    eps = [{"ip": f"127.0.0.{i}", "port": 45000, "kind": "ENDPOINT_KIND_SERVER_REFLEXIVE"} for i in range(2, 17)]
    token = g("Register", {"peer_id": me, "username": "mallory", "udp_port": 45000, "endpoints": eps})["sessionToken"]
    peers = g("ListPeers", {})["peers"]
    target = [p["peerId"] for p in peers if p.get("username") == "victim"][0]
    g("RequestConnect", {"peer_id": me, "session_token": token, "target_peer_id": target})
    req_bytes = 5 + (2 + 36) + (2 + len(token)) + (2 + 36)
    got = 0; dgrams = 0; end = time.time() + 12
    while time.time() < end:
        r, _, _ = select.select(victims, [], [], 0.2)
        for v in r:
            while True:
                try: got += len(v.recv(4096)); dgrams += 1
                except BlockingIOError: break
    res["request_connect_15_endpoints"] = {"request_bytes": req_bytes, "datagrams": dgrams, "bytes_to_endpoints": got, "factor": round(got / req_bytes, 1)}
    peer.stdin.close(); peer.terminate(); peer.wait(5)
finally:
    srv.terminate(); srv.wait(5)
print(json.dumps(res, indent=1))
