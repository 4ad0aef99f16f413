"use strict";
// Renders the page described by window.PAGE (set by this page's data/*.js file). Every value in PAGE comes
// from run folders, which people send each other: it reaches the page only through h`...`, which escapes each
// value it is given (an Html, made by h itself, goes in as it is), and links and images only to relative paths.
(function () {
  const P = window.PAGE, main = document.getElementById("main");
  class Html { constructor(s) { this.s = s; } toString() { return this.s; } }
  const esc = (s) => String(s).replace(/[&<>"'`]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;"}[c]));
  const part = (v) => (v instanceof Html ? v.s : Array.isArray(v) ? v.map(part).join("") : v === null || v === undefined ? "" : esc(v));
  const h = (strings, ...values) => new Html(strings.reduce((out, s, i) => out + part(values[i - 1]) + s));
  const url = (u) => (typeof u === "string" && /^[A-Za-z0-9_.\/-]+$/.test(u) && !u.startsWith("/") && !u.split("/").includes("..") ? u : "#");
  const num = (v) => (typeof v === "number" ? v : null);
  const list = (v) => (Array.isArray(v) ? v : []);
  const fmt = (v, d = 3) => (num(v) === null ? "n/a" : Number(v).toPrecision(d));
  const pct = (v) => (num(v) === null ? "n/a" : (100 * v).toFixed(v < 0.01 ? 2 : 1) + "%");
  const shape = (s) => (Array.isArray(s) ? s.map(String).join("×") : "?");
  const link = (href, text) => (href ? h`<a href="${url(href)}">${text}</a>` : h`<span class="nolink">${text}</span>`);
  const img = (src, cls, alt, lazy) => h`<img class="px ${cls || ""}" src="${url(src)}" alt="${alt || ""}"${lazy ? h` loading="lazy"` : ""}>`;
  const notes = (items) => list(items).map((n) => h`<div class="note">${n}</div>`);
  const nav = (extra) => h`<nav class="top"><a href="index.html">model</a>${extra || ""}</nav>`;
  const tags = (r) => h`${r.dead ? h`<span class="tag dead">dead</span>` : ""}${r.rare ? h`<span class="tag rare">rarely active</span>` : ""}${
    r.reached === false ? h`<span class="tag unreached">not reached</span>` : ""}`;
  const join = (...parts) => new Html(parts.map(part).join(""));  // Html and values (escaped) in a row
  const show = (html) => { main.innerHTML = html.s; };

  function model() {
    const layers = list(P.layers), classes = list(P.classes), images = list(P.images);
    show(h`${nav()}<h1>${P.title}</h1>${notes(P.notes)}${layers.length ? h`<h2>Layers</h2><table><tr><th>layer</th><th>type</th><th>shape</th><th>channels</th><th>live / dead</th><th>rarely active</th><th>not reached</th><th>median ratio</th></tr>${
      layers.map((l) => join(h`<tr><td>${link(l.href, l.layer)}</td><td>${l.type || "?"}</td><td>${shape(l.shape)}</td><td>${l.channels}</td>`,
        h`<td>${l.live === null ? "no dataset" : h`${l.live} / ${l.dead}`}</td><td>${l.rare}</td><td>${l.not_reached}</td><td>${fmt(l.median_ratio)}</td></tr>`))}</table>` : ""}${
      classes.length ? h`<h2>Classes</h2><p class="list">${classes.map((c) => h`${link(c.href, c.name)} `)}</p>` : ""}${
      images.length ? h`<h2>Images</h2><p class="list">${images.map((i) => h`<a href="${url(i.href)}">${img(i.thumb, "", i.source)} ${i.prediction} (p=${fmt(i.probability)})</a>`)}</p>` : ""}`);
  }

  function layer() {
    const s = P.summary, channels = list(P.channels);
    show(join(h`${nav()}<h1>${P.title}</h1>${notes(P.notes)}`,
      h`<p>${s.channels} channels${s.live === null ? " (no dataset: live/dead unknown)" : h`, ${s.live} live, ${s.dead} dead`}`,
      h`, ${s.rare} rarely active (active on fewer than ${pct(P.rare_share)} of images), ${s.not_reached} not reached; median ratio ${fmt(s.median_ratio)} (live channels, rarely active left out)</p>`,
      h`<p class="controls"><label>sort <select id="sort"><option value="c">index</option><option value="ratio">ratio</option><option value="active">how often active</option><option value="best">optimized activation</option></select></label>`,
      h`<label><input type="checkbox" id="hideDead"> hide dead</label><label><input type="checkbox" id="hideRare"> hide rarely active</label>`,
      h`<span id="shown"></span></p><div class="grid" id="grid"></div>`));
    const grid = document.getElementById("grid"), sort = document.getElementById("sort");
    const hideDead = document.getElementById("hideDead"), hideRare = document.getElementById("hideRare");
    const value = (r, key) => (num(r[key]) === null ? -Infinity : r[key]);
    function draw() {
      const key = sort.value, rows = channels.filter((r) => !(hideDead.checked && r.dead) && !(hideRare.checked && r.rare));
      if (key !== "c") rows.sort((a, b) => value(b, key) - value(a, key) || a.c - b.c);
      grid.innerHTML = rows.map((r) => {
        const cls = r.dead ? "dead" : r.rare ? "rare" : r.reached ? "" : "unreached";
        const label = r.dead ? "dead" : r.rare ? "rare" : !r.reached ? "not reached" : num(r.ratio) === null ? fmt(r.best) : "r " + fmt(r.ratio, 2);
        return h`<a class="card ${cls}" href="${url(r.href)}" data-c="${r.c}">${img(r.thumb, "", "channel " + r.c, true)}${r.c}${r.name !== undefined ? " " + r.name : ""}<br>${label}</a>`.s;
      }).join("");
      document.getElementById("shown").textContent = ` ${rows.length} shown`;
      grid.dataset.order = rows.map((r) => r.c).join(",");
    }
    sort.onchange = hideDead.onchange = hideRare.onchange = draw;
    draw();
  }

  // hist: images per bin of channels.HISTOGRAM_EDGES, the non-empty span only. lower/upper: each bin's edges
  // (null: unbounded; the first bin of all holds values <= 0). Bins are log-spaced (four per decade), so the
  // edges are labelled: the powers of ten between bars, and both ends.
  function histogram(hist) {
    const counts = list(hist.counts).map((c) => num(c) || 0), lower = list(hist.lower), upper = list(hist.upper);
    const w = 360, hgt = 120, n = counts.length, top = Math.max(...counts, 1), step = w / Math.max(n, 1);
    const decade = (v) => v > 0 && Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-6;
    const edge = (v) => (v === 0 ? "0" : Number(v).toExponential(0).replace("e+", "e"));
    const range = (i) => (upper[i] === 0 ? "≤ 0" : upper[i] === null ? `≥ ${edge(lower[i])}` : `${edge(lower[i])} to ${edge(upper[i])}`);
    const bars = counts.map((c, i) => join(h`<rect x="${i * step}" y="${hgt - (c / top) * hgt}" width="${Math.max(step - 1, 1)}" `,
      h`height="${(c / top) * hgt}"><title>${range(i)}: ${c} image${c === 1 ? "" : "s"}</title></rect>`));
    const label = (x, text, anchor) => h`<text x="${x}" y="${hgt + 14}" font-size="11" text-anchor="${anchor}">${text}</text>`;
    const labels = [];
    for (let i = 0; i <= n; i++) {
      const value = i < n ? lower[i] : upper[n - 1];
      const anchor = i === 0 ? "start" : i === n ? "end" : "middle";
      if (i === 0 && value === null) labels.push(label(0, "≤ 0", "start"));
      else if (i === n && value === null) labels.push(label(w, `≥ ${edge(lower[n - 1])}`, "end"));
      else if (num(value) !== null && (i === 0 || i === n || decade(value))) {
        if (i === 0 || i === n || (i * step > 24 && w - i * step > 24)) labels.push(label(i * step, edge(value), anchor));
      }
    }
    return join(h`<svg class="hist" width="${w}" height="${hgt + 18}">${bars}${labels}</svg>`,
      h`<p>images per bin of the activation (bins four per decade); lowest ${fmt(hist.low)}, highest ${fmt(hist.high)}</p>`);
  }

  function arrows() {
    document.addEventListener("keydown", (e) => {
      if (e.key === "ArrowLeft" && P.prev) location.href = url(P.prev);
      if (e.key === "ArrowRight" && P.next) location.href = url(P.next);
    });
  }
  const pager = () => h`${P.prev ? h`<a id="prev" href="${url(P.prev)}">← previous</a>` : ""}${P.next ? h`<a id="next" href="${url(P.next)}">next →</a>` : ""}`;

  function channel() {
    const r = P.row, optimized = list(P.optimized), examples = list(P.examples), inputs = list(P.inputs), outputs = list(P.outputs);
    show(join(h`${nav(h`<a href="${url(P.layer_href)}">layer ${P.layer}</a>${pager()}`)}<h1>${P.title}${tags(r)}</h1>${notes(P.notes)}`,
      h`<p>optimized activation ${fmt(r.best)}; ratio ${num(r.ratio) === null ? "n/a" : fmt(r.ratio)} (optimized / best real image)`,
      h`; active on ${pct(r.active)} of the dataset's images${r.rare ? " — rarely active, left out of ratio summaries" : ""}</p>`,
      h`<h2>Optimized image${optimized.length > 1 ? "s" : ""}</h2><div class="big">${optimized.map((o) => h`<span class="ex">${img(o.src, "", "optimized")}${fmt(o.activation)}</span>`)}</div>`,
      (examples.length ? h`<h2>Real images that excite it most${P.neuron ? " (green box: the centre position the run maximizes)" : ""}</h2><div>${
        examples.map((e) => h`<span class="ex">${img(e.src, "", "example " + e.index)}#${e.index}${e.label !== null && e.label !== undefined ? h` (${e.label})` : ""}: ${fmt(e.value)}</span>`)}</div>` : ""),
      (P.hist ? h`<h2>Activation over the dataset</h2>${histogram(P.hist)}` : ""),
      (inputs.length ? h`<h2>Inputs: previous layer's channels that contribute most</h2><p class="list">${
        inputs.map((i) => link(i.href, h`${i.thumb ? img(i.thumb, "", "") : ""}${i.layer} ${i.channel} (${fmt(i.value)})`))}</p>` : ""),
      (outputs.length ? h`<h2>Outputs: classes it raises most</h2><p class="list">${outputs.map((o) => link(o.href, h`${o.name} (${fmt(o.value)})`))}</p>` : "")));
    arrows();
  }

  function klass() {
    const top = list(P.top), confusions = list(P.confusions), channels = list(P.channels);
    show(join(h`${nav(pager())}<h1>${P.title}</h1>${notes(P.notes)}`,
      (P.image ? h`<h2>Optimized for this class</h2><div class="big">${img(P.image.src, "", "class image")}</div><p>p = ${fmt(P.image.probability)}</p>` : ""),
      (P.heldout ? h`<p>held-out: ${P.heldout.correct} of ${P.heldout.count} images of this class classified correctly (${P.heldout.source})</p>` : ""),
      (top.length ? h`<h2>Real images the model scores highest</h2><div>${top.map((t) => h`<span class="ex">${img(t.src, "", "image " + t.index)}${t.label}: ${fmt(t.score)}</span>`)}</div>` : ""),
      (confusions.length ? h`<h2>Confused with</h2><table><tr><th>class</th><th>this class taken for it</th><th>it taken for this class</th></tr>${
        confusions.map((c) => h`<tr><td>${link(c.href, c.name)}</td><td>${c.count}</td><td>${c.as_this}</td></tr>`)}</table>` : ""),
      (channels.length ? h`<h2>Channels that contribute most</h2><p class="list">${
        channels.map((c) => link(c.href, h`${img(c.thumb, "", "")}${c.layer} ${c.channel} (${fmt(c.value)})`))}</p>` : "")));
    arrows();
  }

  function image() {
    const p = P.prediction;
    show(join(h`${nav()}<h1>${P.title}</h1>${notes(P.notes)}<div class="big">${img(P.input_src, "", "input")}${img(P.saliency_src, "", "saliency")}</div>`,
      (p ? h`<p>prediction: ${link(p.href, p.name)} (p=${fmt(p.probability)}); top-5: ${list(P.top5).map((t, i) => h`${i ? ", " : ""}${t.name} ${fmt(t.probability)}`)}</p>${
        h`<p>left: the input as the model sees it; right: saliency (d logit / d pixel)</p>`}`
        : h`<p>no prediction: the model's logits are unknown</p><p>left: the input as the model sees it; right: saliency of the last layer's strongest unit</p>`),
      h`${list(P.layers).map((l) => h`<h2>${link(l.href, l.layer)} (${shape(l.shape)}, ${l.activation}), strongest first</h2><div>${
        list(l.channels).map((c) => h`<span class="fmap">${c.src ? img(c.src, "", "channel " + c.channel, true) : ""}${link(c.href, c.name !== undefined ? c.name : "#" + c.channel)} ${fmt(c.value, 2)}</span>`)}</div>`)}`));
  }

  const render = {model, layer, channel, class: klass, image}[P.kind];
  if (render) render();
  document.title = String(P.title);
  window.READY = performance.now();
})();
