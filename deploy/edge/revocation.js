// doclink link revocation: CloudFront Function, runtime cloudfront-js-2.0,
// viewer-request event. deploy/cloudformation.yaml inlines this file verbatim
// (scripts/check-edge-inline.py keeps the two identical).
//
// Every link doclink mails carries lid=<link uuid>, covered by the signature.
// doclink writes the ids of revoked links into the associated KeyValueStore
// (key = lowercase link id, value = expiry epoch seconds). A request whose lid
// is in the store gets 403; anything else goes on unchanged to CloudFront's
// signed-URL check, which is what protects the document.
import cf from 'cloudfront';

const kvs = cf.kvs();

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
// doclink issues exactly one lid per link. A request may repeat the
// parameter; each value is looked up, so a revoked id cannot hide behind a
// second, harmless one (a wildcard resource in a custom policy would still
// accept such a URL). More values than this are never a doclink link.
const MAX_LIDS = 4;

// The body uses the documented { encoding, data } form (a plain string is
// only a shortcut for encoding 'text').
function revoked() {
    return {
        statusCode: 403,
        statusDescription: 'Forbidden',
        headers: {
            'content-type': { value: 'text/plain; charset=utf-8' },
            'cache-control': { value: 'no-store' }
        },
        body: { encoding: 'text', data: 'This link has been revoked.' }
    };
}

async function handler(event) {
    const request = event.request;
    const param = request.querystring.lid;
    if (!param) {
        return request;
    }
    const values = param.multiValue ? param.multiValue : [param];
    if (values.length > MAX_LIDS) {
        return revoked();
    }
    for (let i = 0; i < values.length; i++) {
        let lid = values[i].value;
        if (typeof lid === 'string' && lid.indexOf('%') !== -1) {
            // A percent-encoded id is still the id: decode before testing.
            try {
                lid = decodeURIComponent(lid);
            } catch (err) {
                continue;
            }
        }
        if (typeof lid !== 'string' || !UUID.test(lid)) {
            // Not a doclink link id: it cannot be in the store.
            continue;
        }
        let found;
        try {
            found = await kvs.exists(lid.toLowerCase());
        } catch (err) {
            // Fail open. A store error is not something a viewer can provoke,
            // and failing closed would turn it into "every customer is denied
            // every document" while the signature and its expiry still bound
            // who can fetch what. A link that must be dead at once (a letter
            // sent to the wrong person) is also handled at the origin: move
            // or delete the object. The log line makes the error visible in
            // the function's CloudWatch logs.
            console.log(`revocation lookup failed, request allowed: lid=${lid} error=${err}`);
            continue;
        }
        if (found) {
            return revoked();
        }
    }
    return request;
}
