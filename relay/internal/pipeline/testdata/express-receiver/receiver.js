// A Ghost webhook receiver as Express apps usually write one: express.json() parses the
// body, and the X-Ghost-Signature HMAC is recomputed over JSON.stringify(req.body) plus
// the timestamp. That only verifies when the bytes received are the compact
// JSON.stringify text the sender signed, which is what the relay must forward.
//   node receiver.js SECRET     prints {"port":N}, then one JSON line per POST
const crypto = require('crypto');
const express = require('express');

const secret = process.argv[2];
const app = express();
app.post('*', express.json({limit: '2mb'}), (req, res) => {
    const header = req.get('x-ghost-signature') || '';
    const [sig, ts] = header.split(', ');
    const t = (ts || '').replace(/^t=/, '');
    const expected = 'sha256=' + crypto.createHmac('sha256', secret).update(JSON.stringify(req.body) + t).digest('hex');
    const ok = sig === expected;
    process.stdout.write(JSON.stringify({webhookId: req.get('webhook-id'), verified: ok}) + '\n');
    res.status(ok ? 200 : 401).end();
});
const server = app.listen(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({port: server.address().port}) + '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
