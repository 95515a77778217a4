// Tests for the revocation CloudFront Function (deploy/edge/revocation.js).
//
//   node --test deploy/edge/revocation.test.mjs
//
// The function is loaded as CloudFront would run it, with the `cloudfront`
// module replaced by a stub whose kvs().exists(key) answers from a KeyValueStore
// import file ({"data":[{"key":"<uuid>","value":"<epoch>"}, ...]}, the format
// CreateKeyValueStore imports):
//   REVOCATION_KVS_FILE    that file (default: fixtures/revocations.kvs.json)
//   REVOCATION_EXPECT_PASS comma-separated link ids that must pass (only read
//                          together with REVOCATION_KVS_FILE), so an integration
//                          test can check both directions against the store
//                          doclink wrote.
// No npm dependencies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const sourcePath = join(here, 'revocation.js');
const kvsFile = process.env.REVOCATION_KVS_FILE || join(here, 'fixtures', 'revocations.kvs.json');
const external = Boolean(process.env.REVOCATION_KVS_FILE);
const expectPass = external && process.env.REVOCATION_EXPECT_PASS
    ? process.env.REVOCATION_EXPECT_PASS.split(',').map((s) => s.trim()).filter(Boolean)
    : [];

const IMPORT_LINE = "import cf from 'cloudfront';";
const source = readFileSync(sourcePath, 'utf8');

// --- the KeyValueStore stub -------------------------------------------------

const store = JSON.parse(readFileSync(kvsFile, 'utf8'));
assert.ok(Array.isArray(store.data), `${kvsFile}: no "data" array`);
const revokedKeys = new Set(store.data.map((item) => item.key));

const lookups = [];
let failWith = null; // when set, exists() rejects with it
const kvsStub = {
    async exists(key) {
        lookups.push(key);
        if (failWith) {
            throw failWith;
        }
        return revokedKeys.has(key);
    }
};

// --- load the function with the stub in place of `cloudfront` ---------------

async function loadHandler() {
    const count = source.split(IMPORT_LINE).length - 1;
    assert.equal(count, 1, `revocation.js must contain the line ${IMPORT_LINE} exactly once`);
    globalThis.__doclinkCloudfrontStub = { kvs: () => kvsStub };
    const patched = source.replace(IMPORT_LINE, 'const cf = globalThis.__doclinkCloudfrontStub;')
        + '\nexport { handler };\n';
    const mod = await import('data:text/javascript;charset=utf-8,' + encodeURIComponent(patched));
    return mod.handler;
}
const handler = await loadHandler();

// --- helpers -----------------------------------------------------------------

// querystring: { name: 'value' } or { name: ['v1', 'v2'] } (repeated parameter)
function viewerRequest(querystring) {
    const qs = {};
    for (const [name, v] of Object.entries(querystring)) {
        if (Array.isArray(v)) {
            qs[name] = { value: v[0], multiValue: v.map((value) => ({ value })) };
        } else {
            qs[name] = { value: v };
        }
    }
    qs.Expires = { value: '1893456000' };
    qs.Signature = { value: 'c2lnbmF0dXJl~_-' };
    qs['Key-Pair-Id'] = { value: 'K2JCJMDEHXQW5F' };
    return {
        version: '1.0',
        context: { distributionId: 'EDFDVBD6EXAMPLE', eventType: 'viewer-request', requestId: 'r-1' },
        viewer: { ip: '198.51.100.11' },
        request: {
            method: 'GET',
            uri: '/decisions/2026/ABC-123/D%C3%A9cision.pdf',
            querystring: qs,
            headers: { host: { value: 'documents.example.org' } },
            cookies: {}
        }
    };
}

async function assertPasses(querystring) {
    const event = viewerRequest(querystring);
    const before = structuredClone(event.request);
    const result = await handler(event);
    assert.equal(result, event.request, 'the request object itself is returned');
    assert.deepEqual(result, before, 'the request is not modified');
}

async function assertRevoked(querystring) {
    const result = await handler(viewerRequest(querystring));
    assert.deepEqual(result, {
        statusCode: 403,
        statusDescription: 'Forbidden',
        headers: {
            'content-type': { value: 'text/plain; charset=utf-8' },
            'cache-control': { value: 'no-store' }
        },
        body: { encoding: 'text', data: 'This link has been revoked.' }
    });
}

function notRevoked() {
    for (;;) {
        const id = randomUUID();
        if (!revokedKeys.has(id)) return id;
    }
}

const someRevoked = [...revokedKeys][0];

// --- cases ---------------------------------------------------------------------

test('every key in the store is a lowercase link id, as doclink writes them', () => {
    for (const item of store.data) {
        assert.match(item.key, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, item.key);
        assert.match(String(item.value), /^[0-9]+$/, `value of ${item.key} is expiry epoch seconds`);
    }
});

test('each revoked lid gets 403 with the revocation body', { skip: revokedKeys.size === 0 && 'store is empty' }, async () => {
    for (const key of revokedKeys) {
        await assertRevoked({ lid: key });
    }
});

test('a revoked lid in upper case is still revoked (looked up in lower case)', { skip: !someRevoked && 'store is empty' }, async () => {
    lookups.length = 0;
    await assertRevoked({ lid: someRevoked.toUpperCase() });
    assert.deepEqual(lookups, [someRevoked]);
});

test('a percent-encoded revoked lid is still revoked', { skip: !someRevoked && 'store is empty' }, async () => {
    const encoded = someRevoked.replace(/[0-9a-f]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
    await assertRevoked({ lid: encoded });
    await assertRevoked({ lid: someRevoked.slice(0, 8) + '%2D' + someRevoked.slice(9) });
});

test('a lid with a broken percent escape passes without a lookup', async () => {
    lookups.length = 0;
    await assertPasses({ lid: '%E0%A4%A' });
    await assertPasses({ lid: notRevoked() + '%' });
    assert.deepEqual(lookups, []);
});

test('a lid that is not revoked passes unchanged', async () => {
    await assertPasses({ lid: notRevoked() });
});

test('REVOCATION_EXPECT_PASS lids pass', { skip: expectPass.length === 0 && 'no REVOCATION_EXPECT_PASS' }, async () => {
    for (const lid of expectPass) {
        await assertPasses({ lid });
    }
});

test('no lid passes without a lookup', async () => {
    lookups.length = 0;
    await assertPasses({});
    await assertPasses({ other: someRevoked || notRevoked() });
    assert.deepEqual(lookups, []);
});

test('malformed lids pass without a lookup', async () => {
    lookups.length = 0;
    const bad = [
        '../../x',
        '',
        'a'.repeat(2000),
        (someRevoked || notRevoked()) + 'x',
        ' ' + (someRevoked || notRevoked()),
        (someRevoked || notRevoked()).replace(/-/g, ''),
        '{' + (someRevoked || notRevoked()) + '}',
        'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz'
    ];
    for (const lid of bad) {
        await assertPasses({ lid });
    }
    assert.deepEqual(lookups, []);
});

test('lid given twice, neither revoked, passes', async () => {
    await assertPasses({ lid: [notRevoked(), notRevoked()] });
    await assertPasses({ lid: ['../../x', notRevoked()] });
});

test('lid given twice with a revoked one in either place is revoked', { skip: !someRevoked && 'store is empty' }, async () => {
    await assertRevoked({ lid: [notRevoked(), someRevoked] });
    await assertRevoked({ lid: [someRevoked, notRevoked()] });
    await assertRevoked({ lid: ['../../x', someRevoked] });
});

test('more than four lid values is refused without lookups', async () => {
    lookups.length = 0;
    await assertRevoked({ lid: [notRevoked(), notRevoked(), notRevoked(), notRevoked(), notRevoked()] });
    assert.deepEqual(lookups, []);
});

test('a failing store lookup fails open and logs', async (t) => {
    const logged = [];
    t.mock.method(console, 'log', (...args) => logged.push(args.join(' ')));
    failWith = new Error('KeyValueStore unavailable');
    try {
        const lid = someRevoked || notRevoked();
        await assertPasses({ lid });
        assert.equal(logged.length, 1);
        assert.match(logged[0], /revocation lookup failed/);
        assert.match(logged[0], new RegExp(lid));
    } finally {
        failWith = null;
    }
});

test('the source stays within what cloudfront-js-2.0 accepts', () => {
    assert.ok(Buffer.byteLength(source) <= 10240, 'function code is at most 10 KB');
    assert.match(source, /^async function handler\(event\)/m);
    assert.match(source, /^const kvs = cf\.kvs\(\);$/m);
    // No module syntax beyond the one import, no Node APIs, no syntax the
    // runtime documentation does not list.
    assert.doesNotMatch(source, /^\s*export\b/m);
    assert.doesNotMatch(source, /\brequire\(/);
    assert.doesNotMatch(source, /\?\.|\?\?/);
    assert.doesNotMatch(source, /async\s*\(|async\s+\w+\s*=>/, 'no async arrow functions or closures');
    assert.doesNotMatch(source, /\bclass\b|\bfunction\s*\*/);
});
