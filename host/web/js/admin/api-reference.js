// API reference: the OpenAPI 3.1 description of the HTTP API (`GET /api/v1/openapi.json`,
// generated from the handlers' own annotations), rendered for integrators: the operations by
// tag in the document's order, a filter, and per operation who may call it, its parameters,
// its request body and its answers, with their schemas as field tables.
//
// Everything shown comes from the document and is built as DOM nodes: descriptions go through
// the chat's Markdown renderer (text nodes and a few safe elements, never parsed markup), the
// rest is plain text. The document needs the session's token, so it is fetched once per visit
// and offered for download as a Blob URL (a plain link would not send the bearer header).

import { h, replace } from '../dom.js';
import { renderMarkdown } from '../markdown.js';
import { report, table } from './util.js';

const DOCUMENT = '/api/v1/openapi.json';
const DOWNLOAD_NAME = 'switchboard-openapi.json';
/** The methods an OpenAPI path item may hold, in the order they are listed. */
const METHODS = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options', 'trace'];
/** How deep nested objects are unfolded; the downloaded document has the rest. */
const MAX_DEPTH = 4;
/** The group of operations that name no tag. */
const UNTAGGED = 'other';
const STATUS = {
  101: 'Switching Protocols', 200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content',
  206: 'Partial Content', 304: 'Not Modified', 400: 'Bad Request', 401: 'Unauthorized',
  403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 413: 'Content Too Large',
  415: 'Unsupported Media Type', 429: 'Too Many Requests', 500: 'Internal Server Error',
  503: 'Service Unavailable',
};

// ---- text ----

const BLOCK_START = /^\s*([-*>]|\d+\.)\s/;
const FENCE = /^\s*```/;

/**
 * Doc comments arrive hard-wrapped at the source's line width; join each paragraph's lines so
 * the text wraps at the reader's. Blank lines, list items, quotes and fenced code keep their
 * line breaks.
 */
function reflow(text) {
  const out = [];
  let fenced = false;
  for (const line of String(text ?? '').split('\n')) {
    const prev = out.length ? out[out.length - 1] : '';
    const fence = FENCE.test(line);
    if (!fenced && !fence && prev.trim() && !FENCE.test(prev) && line.trim() && !BLOCK_START.test(line)) {
      out[out.length - 1] = `${prev} ${line.trim()}`;
    } else {
      out.push(line);
    }
    if (fence) fenced = !fenced;
  }
  return out.join('\n');
}

/** A description from the document (CommonMark in OpenAPI) as nodes. */
function prose(text) {
  return text ? renderMarkdown(reflow(text)) : [];
}

const literal = (value) => JSON.stringify(value);

/** A path with its `{parameters}` marked, so they stand out from the fixed segments. */
function pathNodes(path) {
  return path.split(/(\{[^}]*\})/).filter(Boolean)
    .map((part) => (part.startsWith('{') ? h('span', { class: 'api-param' }, part) : part));
}

// ---- the document ----

/** The node a local `$ref` (`#/components/schemas/Room`) points at, or null. */
function lookup(doc, ref) {
  // Remote references are not followed: the server's document has none, and this page must
  // not fetch anything from elsewhere.
  if (typeof ref !== 'string' || !ref.startsWith('#/')) return null;
  let node = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
    node = node && typeof node === 'object' ? node[key] : undefined;
  }
  return node ?? null;
}

/** Follow `$ref`s (parameters, request bodies, responses) to the node itself. */
function deref(doc, node) {
  for (let hops = 0; node && typeof node.$ref === 'string' && hops < 16; hops += 1) {
    node = lookup(doc, node.$ref);
  }
  return node && typeof node.$ref === 'string' ? null : node;
}

/** `#/components/schemas/Room` → `Room`: a component is shown by its name. */
function refName(ref) {
  return String(ref).split('/').pop();
}

/** Every operation: `{ path, method, op, item, tags }`, in the document's path order. */
function operations(doc) {
  const list = [];
  for (const [path, raw] of Object.entries(doc.paths || {})) {
    const item = deref(doc, raw) || {};
    for (const method of METHODS) {
      const op = item[method];
      if (!op || typeof op !== 'object') continue;
      const tags = Array.isArray(op.tags) && op.tags.length ? op.tags : [UNTAGGED];
      list.push({ path, method, op, item, tags });
    }
  }
  return list;
}

/**
 * Who may call `op`: its own `security`, else the document's. An empty list, or an empty
 * requirement (`{}`) among the alternatives, means no token is needed (or only optionally).
 */
function security(doc, op) {
  const alternatives = (op.security ?? doc.security ?? []).map((r) => Object.keys(r || {}));
  const named = alternatives.filter((names) => names.length);
  return {
    needed: named.length > 0 && named.length === alternatives.length,
    optional: named.length > 0 && named.length < alternatives.length,
    alternatives: named,
  };
}

/** `bearer` → "HTTP bearer, JWT": what kind of credential a scheme is. */
function schemeKind(scheme) {
  if (!scheme) return 'not described';
  if (scheme.type === 'http') return `HTTP ${scheme.scheme}${scheme.bearerFormat ? `, ${scheme.bearerFormat}` : ''}`;
  if (scheme.type === 'apiKey') return `API key in the ${scheme.in} ${literal(scheme.name)}`;
  if (scheme.type === 'oauth2') return 'OAuth 2';
  if (scheme.type === 'openIdConnect') return 'OpenID Connect';
  return String(scheme.type);
}

function authView(doc, auth) {
  if (!auth.needed && !auth.optional) return h('p', { class: 'api-auth' }, 'No token needed.');
  const schemes = doc.components?.securitySchemes || {};
  const names = [...new Set(auth.alternatives.flat())];
  return h('div', { class: 'api-auth' },
    h('p', {}, auth.optional ? 'A token is optional: ' : 'Needs a token: ',
      auth.alternatives.map((all, i) => [i ? ' or ' : '', all.map((name, j) => [j ? ' and ' : '', h('code', {}, name)])])),
    h('ul', { class: 'api-schemes' }, names.map((name) => h('li', {},
      h('code', {}, name), ` (${schemeKind(schemes[name])})`,
      schemes[name]?.description ? [': ', prose(schemes[name].description)] : null))));
}

// ---- schemas ----

function typesOf(schema) {
  if (Array.isArray(schema.type)) return schema.type;
  if (schema.type) return [schema.type];
  if (schema.properties) return ['object'];
  if (schema.items) return ['array'];
  return [];
}

function isNull(schema) {
  return Boolean(schema) && typeof schema === 'object' && !schema.$ref
    && (schema.const === null || (typesOf(schema).length === 1 && typesOf(schema)[0] === 'null'));
}

/** Distinct labels, `null` last ("Event | null" reads better than "null | Event"). */
function union(labels) {
  const distinct = [...new Set(labels)];
  return [...distinct.filter((l) => l !== 'null'), ...distinct.filter((l) => l === 'null')];
}

/** A short type: `string | null`, `Event[]`, `map of string`, `"group" | "direct"`, `Room`. */
function typeLabel(schema, depth = 0) {
  if (schema === true || schema === undefined || schema === null) return 'any';
  if (schema === false) return 'nothing';
  if (typeof schema !== 'object') return 'any';
  // Labels recurse through items and unions only; a document that nests those absurdly deep
  // still gets a finite label.
  if (depth > 8) return '…';
  if (schema.$ref) return refName(schema.$ref);
  if ('const' in schema) return literal(schema.const);
  if (Array.isArray(schema.enum)) return schema.enum.map(literal).join(' | ');
  for (const [key, glue] of [['oneOf', ' | '], ['anyOf', ' | '], ['allOf', ' & ']]) {
    if (Array.isArray(schema[key]) && schema[key].length) {
      return union(schema[key].map((s) => typeLabel(s, depth + 1))).join(glue);
    }
  }
  const types = typesOf(schema);
  if (!types.length) return 'any';
  return union(types.map((type) => {
    if (type === 'array') {
      const item = typeLabel(schema.items, depth + 1);
      return / [|&] /.test(item) ? `(${item})[]` : `${item}[]`;
    }
    if (type === 'object' && !schema.properties && schema.additionalProperties
      && typeof schema.additionalProperties === 'object') {
      return `map of ${typeLabel(schema.additionalProperties, depth + 1)}`;
    }
    if (type !== 'null' && schema.format) return `${type} (${schema.format})`;
    return type;
  })).join(' | ');
}

/** An alternative of a `oneOf`: its title, or the tag that tells it apart (`kind: "group"`). */
function variantLabel(schema) {
  if (schema?.$ref) return refName(schema.$ref);
  if (schema?.title) return schema.title;
  for (const [name, prop] of Object.entries(schema?.properties || {})) {
    if (prop && 'const' in prop) return `${name}: ${literal(prop.const)}`;
    if (Array.isArray(prop?.enum) && prop.enum.length === 1) return `${name}: ${literal(prop.enum[0])}`;
  }
  return typeLabel(schema);
}

/**
 * The values of an enum the label only names (`RoomKind`, or `RoomKind | null`); null when
 * the label lists them already or there are none.
 */
function namedEnum(doc, schema) {
  const choices = schema?.oneOf || schema?.anyOf;
  const real = Array.isArray(choices) ? choices.filter((s) => !isNull(s)) : [schema];
  if (real.length !== 1 || !real[0]?.$ref) return null;
  const values = deref(doc, real[0])?.enum;
  return Array.isArray(values) ? values : null;
}

/** Limits and flags worth knowing beside a field's description. */
function notes(doc, schema) {
  if (!schema || typeof schema !== 'object') return null;
  const out = [];
  const values = namedEnum(doc, schema);
  if (values) out.push(`one of ${values.map(literal).join(', ')}`);
  if ('default' in schema) out.push(`default ${literal(schema.default)}`);
  if (schema.minimum !== undefined) out.push(`at least ${schema.minimum}`);
  if (schema.exclusiveMinimum !== undefined) out.push(`more than ${schema.exclusiveMinimum}`);
  if (schema.maximum !== undefined) out.push(`at most ${schema.maximum}`);
  if (schema.exclusiveMaximum !== undefined) out.push(`less than ${schema.exclusiveMaximum}`);
  if (schema.minLength !== undefined) out.push(`at least ${schema.minLength} characters`);
  if (schema.maxLength !== undefined) out.push(`at most ${schema.maxLength} characters`);
  if (schema.minItems !== undefined) out.push(`at least ${schema.minItems} items`);
  if (schema.maxItems !== undefined) out.push(`at most ${schema.maxItems} items`);
  if (schema.pattern) out.push(`matches ${schema.pattern}`);
  if (schema.readOnly) out.push('read only');
  if (schema.writeOnly) out.push('write only');
  if (schema.deprecated) out.push('deprecated');
  return out.length ? h('span', { class: 'api-notes' }, out.join(' · ')) : null;
}

/**
 * The fields of an `allOf` whose parts are all objects (serde's `flatten`: a `Room` and its
 * own fields) as one object, with the components it went through; null when a part is not an
 * object or would repeat a component being shown (a cycle).
 */
function mergeAll(doc, schema, seen) {
  const properties = {};
  const required = new Set();
  const refs = [];
  for (let part of schema.allOf) {
    if (part?.$ref) {
      if (seen.has(part.$ref)) return null;
      refs.push(part.$ref);
      part = lookup(doc, part.$ref);
    }
    if (!part || typeof part !== 'object') return null;
    if (Array.isArray(part.allOf)) {
      const inner = mergeAll(doc, part, new Set([...seen, ...refs]));
      if (!inner) return null;
      refs.push(...inner.refs);
      part = inner.schema;
    }
    if (!part.properties && !typesOf(part).includes('object')) return null;
    Object.assign(properties, part.properties || {});
    for (const name of part.required || []) required.add(name);
  }
  return { schema: { type: 'object', properties, required: [...required] }, refs };
}

/**
 * What a schema holds beyond its type label: an object's fields, an array's item, a map's
 * values, the alternatives of a `oneOf`. Null when the label says it all. `seen` holds the
 * components on the way here, so a schema that contains itself is named, not unfolded again.
 */
function schemaView(doc, schema, depth, seen) {
  if (!schema || typeof schema !== 'object') return null;
  if (schema.$ref) {
    if (seen.has(schema.$ref)) {
      return h('p', { class: 'api-note' }, `${refName(schema.$ref)}: as above (it contains itself).`);
    }
    const target = lookup(doc, schema.$ref);
    if (!target) return h('p', { class: 'api-note' }, `${schema.$ref} is not in the document.`);
    return schemaView(doc, target, depth, new Set([...seen, schema.$ref]));
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length) {
    const merged = mergeAll(doc, schema, seen);
    if (merged) return schemaView(doc, merged.schema, depth, new Set([...seen, ...merged.refs]));
    return variants(doc, 'All of:', schema.allOf, null, depth, seen);
  }
  const choices = schema.oneOf || schema.anyOf;
  if (Array.isArray(choices) && choices.length) {
    // `T | null` (an `Option<T>`) unfolds as T: the label already says it may be null.
    const real = choices.filter((s) => !isNull(s));
    if (real.length === 1) return schemaView(doc, real[0], depth, seen);
    return variants(doc, schema.oneOf ? 'One of:' : 'Any of:', real, schema.discriminator, depth, seen);
  }
  const types = typesOf(schema);
  if (types.includes('array') && schema.items) {
    const inner = schemaView(doc, schema.items, depth, seen);
    return inner ? [h('p', { class: 'api-note' }, 'Each item: ', h('code', { class: 'api-type' }, typeLabel(schema.items))), inner] : null;
  }
  if (schema.properties && Object.keys(schema.properties).length) {
    return fieldTable(doc, schema, depth, seen);
  }
  const values = schema.additionalProperties;
  if (values && typeof values === 'object') {
    const inner = schemaView(doc, values, depth, seen);
    return inner ? [h('p', { class: 'api-note' }, 'Each value: ', h('code', { class: 'api-type' }, typeLabel(values))), inner] : null;
  }
  return null;
}

function variants(doc, title, list, discriminator, depth, seen) {
  return h('div', { class: 'api-variants' },
    h('p', { class: 'api-note' }, title,
      discriminator?.propertyName ? [' (told apart by ', h('code', {}, discriminator.propertyName), ')'] : null),
    h('ol', {}, list.map((s) => h('li', {},
      h('code', { class: 'api-type' }, variantLabel(s)),
      nestedView(doc, s, depth + 1, seen)))));
}

function deeper() {
  return h('p', { class: 'api-note' }, 'Nested deeper than shown here: see the downloaded document.');
}

/** Whether `schema` has more than its label says (fields, alternatives), without unfolding it. */
function hasMore(doc, schema, hops = 0) {
  // `hops` bounds a chain of references that only point at each other.
  if (!schema || typeof schema !== 'object' || hops > 16) return false;
  if (schema.$ref) return hasMore(doc, lookup(doc, schema.$ref), hops + 1);
  if (schema.properties && Object.keys(schema.properties).length) return true;
  if (Array.isArray(schema.allOf) && schema.allOf.length) return true;
  const choices = schema.oneOf || schema.anyOf;
  if (Array.isArray(choices) && choices.length) {
    const real = choices.filter((s) => !isNull(s));
    return real.length > 1 || real.some((s) => hasMore(doc, s, hops + 1));
  }
  if (schema.items) return hasMore(doc, schema.items, hops + 1);
  const values = schema.additionalProperties;
  return Boolean(values) && typeof values === 'object' && hasMore(doc, values, hops + 1);
}

/** A field's own contents one level down, or a note where the unfolding stops. */
function nestedView(doc, schema, depth, seen) {
  if (depth < MAX_DEPTH) return schemaView(doc, schema, depth, seen);
  return hasMore(doc, schema) ? deeper() : null;
}

/** An object's fields: name, type, required, description; nested objects unfold below. */
function fieldTable(doc, schema, depth, seen) {
  const required = new Set(schema.required || []);
  const rows = [];
  for (const [name, prop] of Object.entries(schema.properties)) {
    rows.push(h('tr', { dataset: { field: name } },
      h('td', {}, h('code', { class: 'api-name' }, name)),
      h('td', {}, h('code', { class: 'api-type' }, typeLabel(prop))),
      h('td', {}, required.has(name) ? 'yes' : 'no'),
      h('td', { class: 'api-prose' }, prose(prop?.description), notes(doc, prop))));
    const nested = nestedView(doc, prop, depth + 1, seen);
    if (nested) rows.push(h('tr', { class: 'api-nested' }, h('td', { colspan: 4 }, nested)));
  }
  return h('div', { class: 'table-wrap api-fields' },
    h('table', {},
      h('caption', { class: 'visually-hidden' }, 'Fields'),
      h('thead', {}, h('tr', {}, ['Field', 'Type', 'Required', 'Description'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows)));
}

/** A request's or response's content: per media type, the schema's name and its fields. */
function contentView(doc, content) {
  return Object.entries(content || {}).map(([type, media]) => {
    const schema = media?.schema;
    const target = schema?.$ref ? lookup(doc, schema.$ref) : null;
    return h('div', { class: 'api-media', dataset: { contentType: type } },
      h('p', {}, h('code', {}, type),
        schema ? [' ', h('code', { class: 'api-type' }, typeLabel(schema))] : null),
      target?.description ? h('div', { class: 'api-prose muted' }, prose(target.description)) : null,
      schema ? schemaView(doc, schema, 0, new Set()) : null);
  });
}

// ---- operations ----

/** Path-level parameters apply to every operation of the path; an operation's own win. */
function parametersOf(doc, entry) {
  const byKey = new Map();
  for (const raw of [...(entry.item.parameters || []), ...(entry.op.parameters || [])]) {
    const p = deref(doc, raw);
    if (p) byKey.set(`${p.in}:${p.name}`, p);
  }
  return [...byKey.values()];
}

function parametersView(doc, entry) {
  const params = parametersOf(doc, entry);
  if (!params.length) return [h('h3', {}, 'Parameters'), h('p', { class: 'muted' }, 'None.')];
  return [h('h3', {}, 'Parameters'), table('Parameters', ['Name', 'In', 'Required', 'Type', 'Description'],
    params.map((p) => {
      // A parameter has a `schema`, or (rarely) a `content` with one.
      const schema = p.schema ?? Object.values(p.content || {})[0]?.schema;
      return {
        attrs: { dataset: { param: p.name } },
        cells: [h('code', { class: 'api-name' }, p.name), p.in, p.required ? 'yes' : 'no',
          h('code', { class: 'api-type' }, typeLabel(schema)),
          h('span', { class: 'api-prose' }, prose(p.description), notes(doc, schema))],
      };
    }), { class: 'api-params' })];
}

function requestView(doc, op) {
  const body = deref(doc, op.requestBody);
  if (!body) return null;
  return h('div', { class: 'api-request' },
    h('h3', {}, 'Request body'),
    h('div', { class: 'api-prose' }, body.required ? 'Required. ' : 'Optional. ', prose(body.description)),
    contentView(doc, body.content));
}

function statusView(status) {
  const kind = /^[1-5]/.test(status) ? `api-status-${status[0]}xx` : 'api-status-default';
  const text = status === 'default' ? 'any other status' : STATUS[status] || '';
  return h('p', {}, h('span', { class: `api-status ${kind}` }, status), text ? ` ${text}` : null);
}

function responsesView(doc, op) {
  const responses = Object.entries(op.responses || {});
  return [h('h3', {}, 'Responses'), responses.length
    ? responses.map(([status, raw]) => {
      const r = deref(doc, raw) || {};
      const headers = Object.keys(r.headers || {});
      return h('div', { class: 'api-response', dataset: { status } },
        statusView(status),
        r.description ? h('div', { class: 'api-prose' }, prose(r.description)) : null,
        headers.length ? h('p', { class: 'api-note' }, 'Headers: ', headers.map((name, i) => [i ? ', ' : '', h('code', {}, name)])) : null,
        contentView(doc, r.content));
    })
    : h('p', { class: 'muted' }, 'None described.')];
}

/** An operation's details, built when it is first opened (all of them at once are heavy). */
function operationBody(doc, entry, auth) {
  const { op } = entry;
  return [
    op.description ? h('div', { class: 'api-prose' }, prose(op.description)) : null,
    authView(doc, auth),
    op.operationId ? h('p', { class: 'api-note' }, 'Operation id ', h('code', {}, op.operationId)) : null,
    entry.tags.length > 1 ? h('p', { class: 'api-note' }, `Tags: ${entry.tags.join(', ')}`) : null,
    parametersView(doc, entry),
    requestView(doc, op),
    responsesView(doc, op),
  ];
}

/** One operation: a `<details>` whose summary is the method, the path and the summary. */
function operationRow(doc, entry) {
  const { method, path, op } = entry;
  const auth = security(doc, op);
  const details = h('details', {
    class: `api-op${op.deprecated ? ' deprecated' : ''}`,
    dataset: { operation: op.operationId ?? '', method: method.toUpperCase(), path },
  },
  h('summary', {},
    h('span', { class: `api-method api-method-${method}` }, method.toUpperCase()),
    h('code', { class: 'api-path' }, pathNodes(path)),
    h('span', { class: 'api-summary' }, prose(op.summary)),
    auth.needed ? null : h('span', { class: 'pill ok' }, auth.optional ? 'token optional' : 'no token'),
    op.deprecated ? h('span', { class: 'pill off' }, 'deprecated') : null));
  let built = false;
  details.addEventListener('toggle', () => {
    if (!details.open || built) return;
    built = true;
    let body;
    try {
      body = operationBody(doc, entry, auth);
    } catch (err) {
      // A shape this page does not expect should cost one operation, not the page.
      body = h('p', { class: 'form-error' }, `This operation could not be shown: ${err.message}`);
    }
    details.append(h('div', { class: 'api-op-body' }, body));
  });
  return details;
}

/** Groups by each operation's first tag, in the document's `tags` order, then any others. */
function groups(doc, entries) {
  const described = new Map((doc.tags || []).map((t) => [t.name, t]));
  const byTag = new Map([...described.keys()].map((name) => [name, []]));
  for (const entry of entries) {
    const tag = entry.tags[0];
    if (!byTag.has(tag)) byTag.set(tag, []);
    byTag.get(tag).push(entry);
  }
  const list = [];
  for (const [name, members] of byTag) {
    if (!members.length) continue;
    for (const entry of members) {
      entry.el = operationRow(doc, entry);
      entry.haystack = [entry.method, entry.path, entry.op.summary, entry.op.operationId, ...entry.tags]
        .filter(Boolean).join('\n').toLowerCase();
    }
    const description = described.get(name)?.description;
    list.push({
      members,
      el: h('section', { class: 'api-tag', dataset: { tag: name } },
        h('h2', {}, name),
        description ? h('div', { class: 'api-prose muted' }, prose(description)) : null,
        members.map((entry) => entry.el)),
    });
  }
  return list;
}

/** Show the operations whose method, path, summary, tags or id contain every word typed. */
function applyFilter(list, query, count, none) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const group of list) {
    let here = 0;
    for (const entry of group.members) {
      entry.el.hidden = !words.every((w) => entry.haystack.includes(w));
      if (!entry.el.hidden) here += 1;
    }
    group.el.hidden = here === 0;
    shown += here;
  }
  count.textContent = `${shown} operation${shown === 1 ? '' : 's'}`;
  none.hidden = shown > 0;
}

function render(doc, url) {
  const info = doc.info || {};
  const list = groups(doc, operations(doc));
  const count = h('span', { id: 'api-count', class: 'muted', role: 'status' });
  const none = h('p', { class: 'muted', hidden: true }, 'No operation matches the filter.');
  const filter = h('input', {
    id: 'api-filter', type: 'search', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'path, method, summary, tag or operation id',
  });
  filter.addEventListener('input', () => applyFilter(list, filter.value, count, none));
  applyFilter(list, '', count, none);
  return [
    h('div', { class: 'api-head' },
      h('p', {},
        h('strong', { id: 'api-title' }, info.title || 'Untitled API'), ' ',
        h('span', { class: 'pill', id: 'api-version' }, `version ${info.version ?? 'unknown'}`),
        h('span', { class: 'muted' }, ` · OpenAPI ${doc.openapi ?? 'unknown'}`)),
      h('p', { class: 'muted' }, 'Every HTTP operation of this server, described by the server itself. '
        + 'Open one for its parameters, request body and answers.'),
      info.description ? h('div', { class: 'api-prose' }, prose(info.description)) : null,
      h('p', {}, h('a', { href: url, download: DOWNLOAD_NAME, id: 'api-download' }, 'Download openapi.json'))),
    h('div', { class: 'row api-toolbar' },
      h('label', { class: 'grow' }, 'Filter', filter),
      count),
    none,
    list.map((group) => group.el),
  ];
}

/** The document's text (for the download) and the document. */
async function load(api) {
  const blob = await api.blob(DOCUMENT);
  let doc;
  try {
    doc = JSON.parse(await blob.text());
  } catch (err) {
    throw new Error(`the description is not JSON (${err.message})`);
  }
  if (!doc || typeof doc !== 'object' || typeof doc.paths !== 'object') {
    throw new Error('the answer is not an OpenAPI description (it has no paths)');
  }
  return { blob, doc };
}

export default {
  id: 'api',
  title: 'API reference',
  mount(el, ctx) {
    const body = h('div', { class: 'api-reference' }, h('p', { class: 'muted' }, 'Loading…'));
    el.append(body);
    let url = null;
    let stopped = false;
    load(ctx.api)
      .then(({ blob, doc }) => {
        if (stopped) return;
        url = URL.createObjectURL(blob);
        replace(body, render(doc, url));
      })
      .catch((err) => {
        if (stopped) return;
        replace(body, h('p', { class: 'form-error', id: 'api-error' },
          `The API description could not be shown: ${err.message}`));
        report(ctx, err);
      });
    return () => {
      stopped = true;
      if (url) URL.revokeObjectURL(url);
    };
  },
};
