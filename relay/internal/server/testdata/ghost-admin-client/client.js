// Ghost's official Admin API client against the relay: node client.js URL KEY TARGET.
// Prints one JSON line per step; ghostclient_test.go checks them.
const GhostAdminAPI = require('@tryghost/admin-api');

const [url, key, target] = process.argv.slice(2);

function report(step, value) {
    console.log(JSON.stringify({step, ...value}));
}

async function expectError(step, fn) {
    try {
        await fn();
        report(step, {ok: true});
    } catch (err) {
        report(step, {ok: false, name: err.name, type: err.type, message: err.message, context: err.context, code: err.code});
    }
}

(async () => {
    const api = new GhostAdminAPI({url, key, version: 'v5.0'});

    const added = await api.webhooks.add({event: 'post.published', target_url: target, name: 'from admin-api', secret: 'c1ient-secret'});
    report('add', {ok: true, webhook: added});

    const edited = await api.webhooks.edit({id: added.id, target_url: target + '/edited', name: 'renamed'});
    report('edit', {ok: true, webhook: edited});

    await expectError('duplicate', () => api.webhooks.add({event: 'post.published', target_url: target + '/edited'}));
    await expectError('unknown-event', () => api.webhooks.add({event: 'post.exploded', target_url: target}));
    await expectError('bad-url', () => api.webhooks.add({event: 'post.published', target_url: 'not a url'}));

    const deleted = await api.webhooks.delete({id: added.id});
    report('delete', {ok: true, result: deleted === undefined || deleted === '' ? null : deleted});
    await expectError('delete-again', () => api.webhooks.delete({id: added.id}));

    // A client pinned to an old Ghost version: /ghost/api/v3/admin/ and aud /v3/admin/.
    const v3 = new GhostAdminAPI({url, key, version: 'v3'});
    const old = await v3.webhooks.add({event: 'tag.added', target_url: target + '/v3'});
    report('add-v3', {ok: true, webhook: old});

    // The audit API with a token from the client's own token function (docs/auditing.md).
    const token = require('@tryghost/admin-api/lib/token');
    const res = await fetch(`${url}/relay/v1/deliveries?status=failed&since=24h`, {
        headers: {Authorization: `Ghost ${token(key, '/admin/')}`}
    });
    report('audit-api', {ok: res.ok, status: res.status, body: await res.json()});

    const wrongKey = new GhostAdminAPI({url, key: key.slice(0, 25) + 'f'.repeat(64), version: 'v5.0'});
    await expectError('wrong-secret', () => wrongKey.webhooks.add({event: 'tag.added', target_url: target}));
})().catch((err) => {
    report('crash', {ok: false, name: err.name, message: err.message, stack: err.stack});
    process.exit(1);
});
