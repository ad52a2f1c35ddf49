// The same webhook calls through Ghost's official client, against a real Ghost or the
// relay: node compare.js URL KEY VERSION TARGET OTHER_ID. OTHER_ID is a webhook of
// another integration. Prints one JSON line per step; ghostcompare_test.go runs this
// against both and compares the lines.
const GhostAdminAPI = require('@tryghost/admin-api');

const [url, key, version, target, otherID] = process.argv.slice(2);
const unknownID = 'aaaaaaaaaaaaaaaaaaaaaaaa';

function report(step, value) {
    console.log(JSON.stringify({step, ...value}));
}

function webhookFields(w) {
    return {event: w.event, target_url: w.target_url, name: w.name, secret: w.secret};
}

// call runs one client call and reports what the caller sees: the webhook, or the
// error the client raised (it copies Ghost's error object onto the exception).
async function call(step, fn) {
    try {
        const w = await fn();
        report(step, {ok: true, id: w && w.id, webhook: w && webhookFields(w)});
        return w;
    } catch (err) {
        report(step, {ok: false, name: err.name, type: err.type, message: err.message, context: err.context});
        return null;
    }
}

(async () => {
    // The client warns on stderr that canary is deprecated; that is not our output.
    const api = new GhostAdminAPI({url, key, version});

    const added = await call('add', () => api.webhooks.add({event: 'post.published', target_url: target, name: 'compare', secret: 'c0mpare'}));
    const id = added ? added.id : unknownID;
    await call('edit', () => api.webhooks.edit({id, target_url: target + '/edited', name: 'renamed'}));
    await call('duplicate', () => api.webhooks.add({event: 'post.published', target_url: target + '/edited'}));
    await call('edit-unknown-id', () => api.webhooks.edit({id: unknownID, name: 'x'}));
    await call('delete-unknown-id', () => api.webhooks.delete({id: unknownID}));
    await call('invalid-event', () => api.webhooks.add({event: 'Post.Published', target_url: target + '/upper'}));
    await call('invalid-url', () => api.webhooks.add({event: 'post.published', target_url: 'not a url'}));
    await call('edit-other-integrations', () => api.webhooks.edit({id: otherID, name: 'stolen'}));
    await call('delete-other-integrations', () => api.webhooks.delete({id: otherID}));

    const wrongSecret = new GhostAdminAPI({url, key: key.slice(0, 25) + 'f'.repeat(64), version});
    await call('bad-token', () => wrongSecret.webhooks.add({event: 'post.published', target_url: target + '/badtoken'}));

    await call('delete', () => api.webhooks.delete({id}));
    await call('delete-again', () => api.webhooks.delete({id}));
})().catch((err) => {
    report('crash', {ok: false, name: err.name, message: err.message, stack: err.stack});
    process.exit(1);
});
