// node_app.js — the peer of lab14 in bench/bench_reload.sh: a plain Node HTTP app that PM2 runs
// in cluster mode (`pm2 start node_app.js -i 2`) and reloads (`pm2 reload`).
//
// It answers the routes the benchmark uses the way the labs do: GET / -> "hello world\n",
// /sleep?ms=N (a timer, default 100), /pid; every response carries X-Worker-Pid. PORT comes
// from the environment (default 8000).
//
// It shuts down the way PM2's documentation asks of an app for a graceful reload: on SIGINT
// (PM2's stop signal) stop accepting, let what is in flight finish, then exit; PM2 kills it after
// kill_timeout otherwise. Without it (GRACEFUL=0) Node exits at once on SIGINT and the requests
// in flight on the old worker fail: the benchmark measures both.
'use strict';
const http = require('http');

const port = Number(process.env.PORT || 8000);

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const send = (status, body) => {
    res.writeHead(status, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'X-Worker-Pid': String(process.pid),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed: use GET or HEAD\n');
  if (url.pathname === '/') return send(200, 'hello world\n');
  if (url.pathname === '/pid') return send(200, `${process.pid}\n`);
  if (url.pathname === '/sleep') {
    const ms = url.searchParams.has('ms') ? Number(url.searchParams.get('ms')) : 100;
    if (!Number.isInteger(ms) || ms < 0 || ms > 600000) return send(400, 'ms must be a whole number from 0 to 600000\n');
    return setTimeout(() => send(200, `slept ${ms} ms\n`), ms);
  }
  return send(404, 'not found\n');
});

server.keepAliveTimeout = 10000;  // the labs' --idle-timeout default
server.listen(port, '127.0.0.1');

// GRACEFUL=0 leaves Node's default (SIGINT ends the process at once): what an app that never
// read that part of PM2's documentation does.
if (process.env.GRACEFUL !== '0') process.on('SIGINT', () => {
  // Node >= 19: close() also closes the idle kept-alive connections; busy ones end after
  // their response (Node answers it with Connection: close once the server is closing).
  server.close(() => process.exit(0));
});
