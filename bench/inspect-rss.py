#!/usr/bin/env python3
# RSS of hookcast while its delivery log fills: inspect.deliveries 1000 with 4 KiB bodies kept.
# Usage: python3 bench/inspect-rss.py target/release/hookcast
import http.client, subprocess, time, os, sys, socket, tempfile
def free():
    s=socket.socket(); s.bind(('127.0.0.1',0)); p=s.getsockname()[1]; s.close(); return p
port, admin = free(), free()
cfg = tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False)
cfg.write(f'''listen: "127.0.0.1:{port}"
admin: {{ listen: "127.0.0.1:{admin}" }}
log: {{ level: warn }}
inspect: {{ deliveries: 1000, bodies: true, body_bytes: 4KiB }}
sse: {{ history: 1 }}
routes:
  - name: a
    match: {{ path: "/hooks/{{n}}" }}
    publish: {{ topic: "t.{{path:n}}", data: "x" }}
''')
cfg.close()
p = subprocess.Popen([sys.argv[1], '--config', cfg.name])
time.sleep(1)
def rss():
    for l in open(f'/proc/{p.pid}/status'):
        if l.startswith('VmRSS'): return int(l.split()[1])
body = b'{"k":"' + b'y'*4090 + b'"}'
c = http.client.HTTPConnection('127.0.0.1', port)
def send(n):
    for i in range(n):
        c.request('POST', '/hooks/1', body=body, headers={'X-Hub-Signature-256': 'sha256=ab'})
        r = c.getresponse(); r.read(); assert r.status == 202
send(50)
base = rss()
send(1000); a = rss()
send(3000); b = rss()
send(3000); d = rss()
print(f'RSS KiB: after 50: {base}; +1000: {a} (+{a-base}); +3000 more: {b}; +3000 more: {d}')
p.terminate(); p.wait()
