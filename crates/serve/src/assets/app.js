// The page of `pipe serve`: pick, drop or paste an image, read its caption.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { blob: null, name: 'image', previewUrl: null, seq: 0 };

function showError(text) {
  const el = $('error');
  el.textContent = text;
  el.hidden = !text;
}

function fmt(value) {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toFixed(4);
  }
  if (value === null || value === undefined) return '—';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

// Flatten {"a": {"b": 1}} into [["a.b", 1]] (one level is what metrics files use).
function flatten(obj, prefix = '') {
  const rows = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && prefix === '') {
      rows.push(...flatten(v, key));
    } else {
      rows.push([key, v]);
    }
  }
  return rows;
}

function addFact(dl, term, value, code = false) {
  if (value === null || value === undefined || value === '') return;
  const dt = document.createElement('dt');
  dt.textContent = term;
  const dd = document.createElement('dd');
  if (code) {
    const c = document.createElement('code');
    c.textContent = value;
    dd.appendChild(c);
  } else {
    dd.textContent = value;
  }
  dl.append(dt, dd);
}

async function loadInfo() {
  let info;
  try {
    const r = await fetch('/api/info');
    info = await r.json();
  } catch (e) {
    $('model-line').textContent = 'Model information unavailable.';
    return;
  }
  const m = info.model;
  const name = m.stage ? `stage ${m.stage}` : (m.source || m.dir);
  $('model-line').textContent = `Serving ${name} on ${m.backend}`;
  const dl = $('model-info');
  addFact(dl, 'Source', m.source);
  addFact(dl, 'Stage', m.stage);
  addFact(dl, 'Stage key', m.stage_key, true);
  addFact(dl, 'Directory', m.dir, true);
  addFact(dl, 'Backend', m.backend);
  addFact(dl, 'Image size', `${m.image_size} × ${m.image_size}`);
  addFact(dl, 'Batching', `up to ${info.batching.max_batch} images per model call`);
  if (m.metrics && typeof m.metrics === 'object') {
    const body = $('metrics').querySelector('tbody');
    for (const [k, v] of flatten(m.metrics)) {
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      th.textContent = k;
      const td = document.createElement('td');
      td.textContent = fmt(v);
      tr.append(th, td);
      body.appendChild(tr);
    }
    $('metrics').hidden = false;
  }

  const beams = $('beams');
  beams.max = info.limits.max_beams;
  beams.value = info.defaults.num_beams;
  const tokens = $('max-tokens');
  tokens.max = info.limits.max_new_tokens;
  tokens.value = info.defaults.max_new_tokens;
  $('max-tokens-out').textContent = tokens.value;

  if (info.examples.length) {
    const box = $('examples');
    for (const ex of info.examples) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'example';
      b.title = ex.name;
      const img = document.createElement('img');
      img.src = ex.url;
      img.alt = ex.name;
      const label = document.createElement('span');
      label.textContent = ex.name;
      b.append(img, label);
      b.addEventListener('click', async () => {
        const r = await fetch(ex.url);
        setImage(await r.blob(), ex.name);
      });
      box.appendChild(b);
    }
    $('examples-card').hidden = false;
  }
}

function setImage(blob, name) {
  state.blob = blob;
  state.name = name || 'image';
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(blob);
  const preview = $('preview');
  preview.src = state.previewUrl;
  preview.hidden = false;
  $('drop').classList.add('has-image');
  $('again').disabled = false;
  caption();
}

async function caption() {
  if (!state.blob) return;
  const seq = ++state.seq;
  const out = $('caption');
  out.dataset.state = 'pending';
  out.classList.add('placeholder');
  out.textContent = 'Captioning…';
  $('timing').textContent = '';
  showError('');
  const form = new FormData();
  form.append('image', state.blob, state.name);
  form.append('num_beams', $('beams').value);
  form.append('max_new_tokens', $('max-tokens').value);
  const t0 = performance.now();
  try {
    const r = await fetch('/api/caption', { method: 'POST', body: form });
    const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (seq !== state.seq) return; // a newer request replaced this one
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    out.textContent = body.caption;
    out.classList.remove('placeholder');
    out.dataset.state = 'done';
    const rtt = Math.round(performance.now() - t0);
    $('timing').textContent =
      `${Math.round(body.ms)} ms on the server (model ${Math.round(body.model_ms)} ms, ` +
      `batch of ${body.batch_size}) · ${rtt} ms round trip · ` +
      `${body.num_beams} beam${body.num_beams > 1 ? 's' : ''}, ${body.tokens.length - 1} tokens generated`;
  } catch (e) {
    if (seq !== state.seq) return;
    out.textContent = 'No caption.';
    out.dataset.state = 'error';
    showError(e.message);
  }
}

function firstImage(files) {
  return Array.from(files || []).find((f) => f.type.startsWith('image/') || f.type === '') || null;
}

function init() {
  const drop = $('drop');
  const file = $('file');
  file.addEventListener('change', () => {
    const f = file.files && file.files[0];
    if (f) setImage(f, f.name);
    file.value = ''; // choosing the same file again must fire `change` again
  });
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      file.click();
    }
  });
  for (const ev of ['dragenter', 'dragover']) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add('dragging');
    });
  }
  for (const ev of ['dragleave', 'drop']) {
    drop.addEventListener(ev, () => drop.classList.remove('dragging'));
  }
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = firstImage(e.dataTransfer && e.dataTransfer.files);
    if (f) setImage(f, f.name);
    else showError('Drop an image file.');
  });
  // Dropping outside the zone must not navigate away from the page.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());
  document.addEventListener('paste', (e) => {
    const f = firstImage(e.clipboardData && e.clipboardData.files);
    if (f) setImage(f, f.name || 'pasted image');
  });
  const tokens = $('max-tokens');
  tokens.addEventListener('input', () => { $('max-tokens-out').textContent = tokens.value; });
  tokens.addEventListener('change', caption);
  $('beams').addEventListener('change', caption);
  $('again').addEventListener('click', caption);
  loadInfo();
}

init();
