"use strict";
// Renders the page described by window.PAGE (set by this page's data/*.js file). Every value in PAGE comes
// from run folders, which people send each other: it reaches the page only through h`...`, which escapes each
// value it is given (an Html, made by h itself, goes in as it is), and links and images only to relative paths.
// A layer's channels share one page (channel-<layer>.html#<channel>): PAGE holds what they share, the channel's
// own data come from its block's script (window.CHANNELS), loaded when the page shows a channel of that block.
(function () {
  let P = window.PAGE;
  const main = document.getElementById("main");
  class Html { constructor(s) { this.s = s; } toString() { return this.s; } }
  const esc = (s) => String(s).replace(/[&<>"'`]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;"}[c]));
  const part = (v) => (v instanceof Html ? v.s : Array.isArray(v) ? v.map(part).join("") : v === null || v === undefined ? "" : esc(v));
  const h = (strings, ...values) => new Html(strings.reduce((out, s, i) => out + part(values[i - 1]) + s));
  const url = (u) => (typeof u === "string" && /^[A-Za-z0-9_.\/-]+(#[0-9]+)?$/.test(u) && !u.startsWith("/") && !u.split("/").includes("..") ? u : "#");
  const num = (v) => (typeof v === "number" && isFinite(v) ? v : null);
  const list = (v) => (Array.isArray(v) ? v : []);
  // a number, or why there is none (never "NaN" or "null" on a page)
  const fmt = (v, d = 3, why = "not computed") => (num(v) === null ? why : Number(v).toPrecision(d));
  // a probability as the PNG reports print it: 1.000 and 0.000 only when exact, else >0.999 and <0.001
  const prob = (v, why = "not computed") => (num(v) === null ? why : v === 1 ? "1.000" : v === 0 ? "0.000"
    : v > 0.999 ? ">0.999" : v < 0.001 ? "<0.001" : Number(v).toFixed(3));
  const pct = (v, why = "no dataset") => (num(v) === null ? why : (100 * v).toFixed(v < 0.01 ? 2 : 1) + "%");
  const shape = (s) => (Array.isArray(s) && s.length ? s.map(String).join("×") : "");
  const link = (href, text) => (href ? h`<a href="${url(href)}">${text}</a>` : h`<span class="nolink">${text}</span>`);
  const img = (src, cls, alt, lazy) => h`<img class="px ${cls || ""}" src="${url(src)}" alt="${alt || ""}"${lazy ? h` loading="lazy"` : ""}>`;
  const notes = (items) => list(items).map((n) => h`<div class="note">${n}</div>`);
  const nav = (extra) => h`<nav class="top"><a href="index.html">model</a>${extra || ""}</nav>`;
  // a channel's labels after its title, each a word apart in the page's text ("channel 14 dead not reached")
  const tags = (r) => [[r.dead, "dead", "dead"], [r.rare, "rare", "rarely active"], [r.reached === false, "unreached", "not reached"],
    [r.flat, "flat", "saturates"]].filter((t) => t[0]).map(([, key, text]) => h` <span class="tag ${key}" title="${WORDS[key]}">${text}</span>`);
  // items of a list, a space apart (in the page's text too: "0 (0.12) 1 (0.08)", never "0 (0.12)1 (0.08)")
  const spaced = (items) => items.map((x) => h`${x} `);
  const join = (...parts) => new Html(parts.map(part).join(""));  // Html and values (escaped) in a row
  const show = (html) => { main.innerHTML = html.s; };
  // A 1-D input's pictures are wide (a waveform, a colour strip): marked "sig" on load, drawn at their own aspect.
  document.addEventListener("load", (e) => {
    const t = e.target;
    if (t.tagName === "IMG" && t.naturalWidth >= 3 * t.naturalHeight) t.classList.add("sig");
  }, true);

  // What each number means: the legend of every page, and the tooltips (title=) on abbreviations.
  const WORDS = {
    activation: "activation: a channel's activation on an image is the mean over its spatial map of the layer's output at its measuring point (what the next layer reads)",
    optimized: "optimized activation: the activation the optimized image (made to excite this channel) reaches",
    ratio: "ratio: the optimized activation divided by the highest activation of any real image of the dataset; above 1 the optimized image beats every real one. None for dead, rarely active or unreached channels, nor without a dataset",
    active: "active share: the share of the dataset's images on which the channel is active (its output after the activation is above 0 somewhere)",
    dead: "dead: active on no image of the dataset",
    rare: "rarely active: active on fewer than 1% of the dataset's images; left out of ratio summaries",
    unreached: "not reached: the optimization never raised the channel's activation above 0",
    measured: "measuring point: where a layer's activation is read, its output followed through BatchNorms and activations up to the first op that mixes channels (run.json's measured_at)",
    p: "p: the probability the model gives the class on the image (softmax of its logits)",
    runner: "runner-up: the class with the next highest logit on the same image, and its probability",
    hist: "histogram: the dataset's images per bin of the channel's activation (bins four per decade, counts on the left axis); the orange mark is the optimized image's activation",
    overlay: "activation map over a real image: the channel's map at that image, in inferno colours from 0 (the picture shows through) to its highest value on that image",
    saliency: "saliency: the gradient of the predicted class's logit with respect to each pixel (red raises it, blue lowers it)",
    map: "feature map: a channel's output on the input after the layer's activation, in magma colours from 0 to the layer's highest value",
    logit: "logit: the model's score for a class before the softmax",
    flat: "saturates: the channel prefers a uniform input: its optimized image has (almost) no contrast (pixel standard deviation under 0.02 or range under 0.05), so it shows no pattern; such channels rank after the informative ones",
  };
  // The line that says a layer's flat channels saturate, with what to try (P.flat_hint) where the run did not.
  const flatLine = (n) => (n ? h`<p class="flat-note">${n === 1 ? "1 channel" : `${n} channels`} ${abbr("flat", n === 1 ? "saturates" : "saturate")}: the channel prefers a uniform input (its optimized image has almost no contrast); ranked after the informative channels${
    P.flat_hint ? h`. ${P.flat_hint}` : ""}.</p>` : "");
  const abbr = (key, text) => h`<abbr title="${WORDS[key]}">${text}</abbr>`;
  const legend = (...keys) => h`<section class="legend"><h2>What the numbers mean</h2><dl>${keys.map((k) => {
    const [term, ...rest] = WORDS[k].split(": ");
    return h`<dt>${term}</dt><dd>${rest.join(": ")}</dd>`;
  })}</dl></section>`;
  // A colour bar: the colours a map uses, from its low to its high value.
  const cbar = (scale, what) => (scale ? h`<div class="cbar-row" title="${what}"><span>${fmt(scale.low, 3, "0")}</span><span class="cbar ${
    ["inferno", "magma", "rdbu", "grey"].includes(scale.map) ? scale.map : "grey"}"></span><span>${fmt(scale.high, 3, "highest")}</span><span class="cbar-what">${what}</span></div>` : "");
  const ratioText = (r) => (num(r.ratio) !== null ? fmt(r.ratio, 3) : r.dead ? "none (dead)" : r.rare ? "none (rarely active)"
    : r.reached === false ? "none (not reached)" : "none (no dataset)");
  const measured = (m) => (m ? h`<p>${abbr("measured", "measured at")}: <code>${m}</code></p>` : "");

  function model() {
    const layers = list(P.layers), classes = list(P.classes), images = list(P.images);
    show(join(h`${nav(P.classes_href ? h`<a href="${url(P.classes_href)}">classes</a>` : "")}<h1>${P.title}</h1>${notes(P.notes)}`,
      (layers.length ? h`<h2>Layers</h2><p class="hint">Each layer's strongest channels (highest ratio): the images made to excite them. Click a layer for all its channels.</p>${
        layers.map((l) => h`<section class="layer-strip"><h3>${link(l.href, l.layer)} <span class="dim">${l.type || ""} ${shape(l.shape)} · ${l.channels} channels${
          l.live === null ? " · live and dead unknown (no dataset)" : h` · ${l.live} live, ${l.dead} dead`} · ${l.rare} ${abbr("rare", "rarely active")} · median ${abbr("ratio", "ratio")} ${fmt(l.median_ratio, 3, "none (no dataset)")}${l.flat ? h` · ${l.flat} ${abbr("flat", "saturate")} (ranked last)` : ""}</span></h3><div class="strip">${
          list(l.strip).map((c) => h`<a class="card" href="${url(c.href)}">${img(c.thumb, "", "channel " + c.c, true)}<span>${c.c}</span><span>${c.flat ? abbr("flat", "saturates") : num(c.ratio) !== null ? h`${abbr("ratio", "r")} ${fmt(c.ratio, 2)}` : h`${abbr("optimized", "act")} ${fmt(c.best, 2)}`}</span></a>`)}${
          list(l.strip).length ? "" : h`<span class="dim">no live channel to show</span>`}</div></section>`)}` : ""),
      (classes.length ? h`<h2>${link(P.classes_href, "Classes")}</h2>${classGrid(classes, true)}` : ""),
      (images.length ? h`<h2>Images</h2><div class="strip">${images.map((i) => h`<a class="card wide" href="${url(i.href)}">${img(i.thumb, "", i.source)}<span>${i.prediction}</span><span>${abbr("p", "p")} ${prob(i.probability, "not known")}</span></a>`)}</div>` : ""),
      legend(...(layers.length ? ["activation", "optimized", "ratio", "rare", "dead"] : []), ...(layers.some((l) => l.flat) ? ["flat"] : []), ...(classes.length || images.length ? ["p", "runner"] : []))));
  }

  function classGrid(classes, small) {
    return h`<div class="grid classes${small ? " small" : ""}">${classes.map((c) => h`<a class="card cls" href="${url(c.href)}">${
      c.thumb ? img(c.thumb, "", "class " + c.name, true) : h`<span class="noimg">no class image</span>`}<b>${c.name}</b><span>${abbr("p", "p")} ${prob(c.probability, "not computed")}</span>${
      c.runner_up !== undefined ? h`<span>${abbr("runner", "runner-up")} ${c.runner_up} ${prob(c.runner_up_probability, "")}</span>` : ""}</a>`)}</div>`;
  }

  function classes() {
    const rows = list(P.classes);
    show(join(h`${nav()}<h1>${P.title}</h1>${notes(P.notes)}<p>One image per class, optimized to raise its logit; under it the probability the model gives the class, and the runner-up class.</p>`,
      classGrid(rows, false), legend("p", "runner", "logit")));
  }

  function layer() {
    const s = P.summary, channels = list(P.channels);
    const live = channels.filter((r) => !r.dead && !r.rare), folded = channels.filter((r) => r.dead || r.rare);
    show(join(h`${nav()}<h1>${P.title}</h1>${notes(P.notes)}${measured(s.measured_at)}`,
      h`<p>${s.channels} channels${s.live === null ? " (no dataset: live and dead unknown)" : h`, ${s.live} live, ${s.dead} ${abbr("dead", "dead")}`}`,
      h`, ${s.rare} ${abbr("rare", "rarely active")} (active on fewer than ${pct(P.rare_share)} of images), ${s.not_reached} ${abbr("unreached", "not reached")}; median ${abbr("ratio", "ratio")} ${fmt(s.median_ratio, 3, "none (no dataset)")} (live channels, rarely active left out)</p>`, flatLine(s.flat),
      h`<p class="controls"><label>sort by <select id="sort"><option value="c">channel index</option><option value="ratio">ratio</option><option value="active">active share</option><option value="best">optimized activation</option></select></label>`,
      h`<span id="shown"></span></p><p class="hint">Each card: the channel's optimized image, then the real images that excite it most${s.dataset ? "" : " (none: the run used no dataset)"}.</p><div class="grid" id="grid"></div>`,
      (folded.length ? h`<details id="foldedSection"><summary>${folded.length} dead or rarely active channel${folded.length === 1 ? "" : "s"} (folded)</summary><div class="grid" id="folded"></div></details>` : ""),
      legend("activation", "optimized", "ratio", "active", "dead", "rare", "unreached", "measured", ...(s.flat ? ["flat"] : []))));
    const grid = document.getElementById("grid"), fold = document.getElementById("folded"), sort = document.getElementById("sort");
    const value = (r, key) => (num(r[key]) === null ? -Infinity : r[key]);
    const card = (r) => {
      const cls = r.dead ? "dead" : r.rare ? "rare" : r.reached ? "" : "unreached";
      const label = r.dead ? h`<abbr title="${WORDS.dead}">dead</abbr>` : r.rare ? h`<abbr title="${WORDS.rare}">rare</abbr>` : r.reached === false ? h`<abbr title="${WORDS.unreached}">not reached</abbr>`
        : num(r.ratio) === null ? h`<abbr title="${WORDS.optimized}">act</abbr> ${fmt(r.best, 2)}` : h`<abbr title="${WORDS.ratio}">r</abbr> ${fmt(r.ratio, 2)}`;
      const share = num(r.active) === null ? "" : h` · <abbr title="${WORDS.active}">on</abbr> ${pct(r.active)}`;
      const flat = r.flat ? h` · <abbr class="flat" title="${WORDS.flat}">saturates</abbr>` : "";
      return h`<a class="card ch ${cls}" href="${url(r.href)}" data-c="${r.c}"><span class="pics">${img(r.thumb, "opt", "channel " + r.c, true)}${
        list(r.examples).map((e) => img(e.src, "exm", "real image", true))}</span><span>${r.c}${r.name !== undefined ? " " + r.name : ""}</span><span>${label}${share}${flat}</span></a>`.s;
    };
    function fill(target, rows, key) {
      if (!target) return;
      // by ratio or optimized activation the strongest first, flat (saturating) channels after the informative ones
      const last = (r) => (key === "ratio" || key === "best") && r.flat ? 1 : 0;
      if (key !== "c") rows.sort((a, b) => last(a) - last(b) || value(b, key) - value(a, key) || a.c - b.c);
      target.innerHTML = rows.map(card).join("");
      target.dataset.order = rows.map((r) => r.c).join(",");
    }
    function draw() {
      const key = sort.value;
      fill(grid, live.slice(), key);
      fill(fold, folded.slice(), key);
      document.getElementById("shown").textContent = ` ${live.length} shown${folded.length ? `, ${folded.length} folded below` : ""}`;
    }
    sort.onchange = draw;
    draw();
  }

  // hist: images per bin of channels.HISTOGRAM_EDGES, the non-empty span only. lower/upper: each bin's edges
  // (null: unbounded; the first bin of all holds values <= 0). Bins are log-spaced (four per decade), so the
  // edges are labelled: the powers of ten between bars, and both ends. A count axis on the left; the optimized
  // image's activation marked (an arrow at the edge when it lies past the bins shown).
  function histogram(hist) {
    const counts = list(hist.counts).map((c) => num(c) || 0), lower = list(hist.lower), upper = list(hist.upper);
    const left = 64, w = 360, hgt = 120, pad = 24, n = counts.length, top = Math.max(...counts, 1), step = w / Math.max(n, 1);
    const decade = (v) => v > 0 && Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-6;
    const edge = (v) => (v === 0 ? "0" : Number(v).toExponential(0).replace("e+", "e"));
    const range = (i) => (upper[i] === 0 ? "≤ 0" : upper[i] === null ? `≥ ${edge(lower[i])}` : `${edge(lower[i])} to ${edge(upper[i])}`);
    const y = (c) => pad + hgt - (c / top) * hgt;
    const bars = counts.map((c, i) => join(h`<rect x="${left + i * step}" y="${y(c)}" width="${Math.max(step - 1, 1)}" `,
      h`height="${(c / top) * hgt}"><title>${range(i)}: ${c} image${c === 1 ? "" : "s"}</title></rect>`));
    const label = (x, text, anchor) => h`<text x="${x}" y="${pad + hgt + 14}" font-size="11" text-anchor="${anchor}">${text}</text>`;
    const labels = [];
    for (let i = 0; i <= n; i++) {
      const value = i < n ? lower[i] : upper[n - 1];
      const anchor = i === 0 ? "start" : i === n ? "end" : "middle";
      if (i === 0 && value === null) labels.push(label(left, "≤ 0", "start"));
      else if (i === n && value === null) labels.push(label(left + w, `≥ ${edge(lower[n - 1])}`, "end"));
      else if (num(value) !== null && (i === 0 || i === n || decade(value))) {
        if (i === 0 || i === n || (i * step > 24 && w - i * step > 24)) labels.push(label(left + i * step, edge(value), anchor));
      }
    }
    const yaxis = h`<line class="axis" x1="${left - 2}" y1="${pad}" x2="${left - 2}" y2="${pad + hgt}"></line><line class="axis" x1="${left - 2}" y1="${pad + hgt}" x2="${left + w}" y2="${pad + hgt}"></line>${
      [0, top / 2, top].map((c) => h`<text x="${left - 6}" y="${y(c) + 4}" font-size="11" text-anchor="end">${Math.round(c)}</text>`)}<text x="12" y="${pad + hgt / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 ${pad + hgt / 2})">images</text>`;
    const o = hist.optimized;
    let mark = "", said = "";
    if (o && num(o.value) !== null) {
      if (num(o.at) !== null) {
        const x = left + (o.at + 0.5) * step;
        mark = h`<line class="opt" x1="${x}" y1="${pad - 4}" x2="${x}" y2="${pad + hgt}"><title>optimized image: ${fmt(o.value)}</title></line><text class="opt" x="${Math.min(Math.max(x, left + 40), left + w - 40)}" y="${pad - 8}" font-size="11" text-anchor="middle">optimized ${fmt(o.value)}</text>`;
        said = h`; optimized image ${fmt(o.value)} (orange line)`;
      } else {
        const right = o.beyond !== "left", x = right ? left + w - 2 : left + 2;
        mark = h`<text class="opt" x="${x}" y="${pad - 8}" font-size="12" text-anchor="${right ? "end" : "start"}">${right ? `optimized ${fmt(o.value)} →` : `← optimized ${fmt(o.value)}`}</text>`;
        said = h`; optimized image ${fmt(o.value)}, ${right ? "beyond the right" : "beyond the left"} edge (arrow)`;
      }
    }
    return join(h`<svg class="hist" width="${left + w + 8}" height="${pad + hgt + 20}">${yaxis}${bars}${labels}${mark}</svg>`,
      h`<p>images per bin of the activation (bins four per decade); lowest ${fmt(hist.low)}, highest ${fmt(hist.high)}${said}</p>`);
  }

  let arrowKeys = false;
  function arrows() {
    if (arrowKeys) return;  // once: a channel page draws each channel it is asked for
    arrowKeys = true;
    document.addEventListener("keydown", (e) => {
      if (e.key === "ArrowLeft" && P.prev) location.href = url(P.prev);
      if (e.key === "ArrowRight" && P.next) location.href = url(P.next);
    });
  }
  const pager = () => h`${P.prev ? h`<a id="prev" href="${url(P.prev)}">← previous</a>` : ""}${P.next ? h`<a id="next" href="${url(P.next)}">next →</a>` : ""}`;

  function channel() {
    const r = P.row, optimized = list(P.optimized), examples = list(P.examples), inputs = list(P.inputs), outputs = list(P.outputs);
    const mapped = examples.some((e) => num(e.peak) !== null);
    show(join(h`${nav(h`<a href="${url(P.layer_href)}">layer ${P.layer}</a>${pager()}`)}<h1>${P.title}${tags(r)}</h1>${notes(P.notes)}${measured(P.measured_at)}`,
      // the optimized activation (the best of the optimized images) is the number under them: not given twice
      h`<p>${!optimized.length ? h`${abbr("optimized", "optimized activation")} ${fmt(r.best, 3, "not recorded")}; ` : ""}${abbr("ratio", "ratio")} ${ratioText(r)} (optimized ÷ best real image)`,
      h`; ${abbr("active", "active share")} ${pct(r.active, P.dataset ? "not computed" : "no dataset")}${P.dataset ? h` of the ${P.dataset} images` : ""}${r.rare ? " (rarely active, left out of ratio summaries)" : ""}</p>`,
      (r.flat ? h`<p class="flat-note">${abbr("flat", "saturates")}: the channel prefers a uniform input (its optimized image has almost no contrast)${P.flat_hint ? h`. ${P.flat_hint}` : ""}.</p>` : ""),
      h`<h2>Optimized image${optimized.length > 1 ? "s" : ""}</h2><div class="big">${optimized.map((o) => h`<span class="ex">${img(o.src, "", "optimized")}${abbr("optimized", "activation")} ${fmt(o.activation)}</span>`)}</div>`,
      (examples.length ? h`<h2>Real images that excite it most${P.neuron ? " (green box: the centre position the run maximizes)" : ""}</h2>${
        mapped ? cbar({map: "inferno", low: 0, high: null}, "the channel's map over each image, 0 to its highest value on that image (map peak under each)") : ""}<div>${
        examples.map((e) => h`<span class="ex">${img(e.src, "", "example " + e.index)}#${e.index}${e.label !== null && e.label !== undefined ? h` (${e.label})` : ""}: ${abbr("activation", "act")} ${fmt(e.value)}${
          num(e.peak) !== null ? h`<br>map peak ${fmt(e.peak, 3)}` : ""}</span>`)}</div>`
        : h`<p class="dim">${r.dead ? "No real images: the channel is dead (active on none)." : P.dataset ? "No real images recorded." : "No real images: the run used no dataset (add --dataset or --images DIR to the run)."}</p>`),
      (P.hist ? h`<h2>Activation over the dataset</h2>${histogram(P.hist)}` : ""),
      (inputs.length ? h`<h2>Inputs: previous layer's channels that contribute most</h2><p class="list">${
        spaced(inputs.map((i) => link(i.href, h`${i.thumb ? img(i.thumb, "", "") : ""}${i.layer} ${i.channel} (${fmt(i.value)})`)))}</p>` : ""),
      (outputs.length ? h`<h2>Outputs: classes it raises most</h2><p class="list">${spaced(outputs.map((o) => link(o.href, h`${o.name} (${fmt(o.value)})`)))}</p>` : ""),
      legend("activation", "optimized", "ratio", "active", "measured", ...(mapped ? ["overlay"] : []), ...(P.hist ? ["hist"] : []), ...(r.flat ? ["flat"] : []))));
    arrows();
  }

  function klass() {
    const top = list(P.top), confusions = list(P.confusions), channels = list(P.channels), im = P.image;
    show(join(h`${nav(h`<a href="classes.html">classes</a>${pager()}`)}<h1>${P.title}</h1>${notes(P.notes)}`,
      (im ? h`<h2>Optimized for this class</h2><div class="big">${img(im.src, "", "class image")}</div><p>${abbr("p", "p")} = ${prob(im.probability, "not recorded")}${
        im.runner_up !== undefined ? h`; ${abbr("runner", "runner-up")}: ${link(im.runner_up_href, im.runner_up)} (${abbr("p", "p")} = ${prob(im.runner_up_probability, "not recorded")})` : ""}</p>` : h`<p class="dim">No optimized image: no classes run in this site.</p>`),
      (P.heldout ? h`<p>held-out: ${P.heldout.correct} of ${P.heldout.count} images of this class classified correctly (${P.heldout.source})</p>` : ""),
      (top.length ? h`<h2>Real images the model scores highest</h2><div>${top.map((t) => h`<span class="ex">${img(t.src, "", "image " + t.index)}${t.label}: ${abbr("logit", "logit")} ${fmt(t.score)}</span>`)}</div>` : ""),
      (confusions.length ? h`<h2>Confused with</h2><table><tr><th>class</th><th>this class taken for it</th><th>it taken for this class</th></tr>${
        confusions.map((c) => h`<tr><td>${link(c.href, c.name)}</td><td>${c.count}</td><td>${c.as_this}</td></tr>`)}</table>` : ""),
      (channels.length ? h`<h2>Channels that contribute most</h2><p class="list">${
        spaced(channels.map((c) => link(c.href, h`${img(c.thumb, "", "")}${c.layer} ${c.channel} (${fmt(c.value)})`)))}</p>` : ""),
      legend("p", "runner", "logit")));
    arrows();
  }

  function image() {
    const p = P.prediction, top5 = list(P.top5);
    const bars = top5.length ? h`<h2>Prediction</h2><div class="bars">${top5.map((t) => h`<div class="bar-row"><span class="bar-name">${t.name}</span><span class="bar"><span class="fill" style="width: ${
      Math.round(1000 * Math.max(0, Math.min(1, num(t.probability) || 0))) / 10}%"></span></span><span>${abbr("p", "p")} ${prob(t.probability, "not known")}</span></div>`)}</div>` : "";
    show(join(h`${nav()}<h1>${P.title}</h1>${notes(P.notes)}<div class="big">${img(P.input_src, "", "input")}${img(P.saliency_src, "", "saliency")}</div>`,
      cbar(P.saliency_scale, P.saliency_signed ? "saliency: blue lowers the logit, red raises it" : "saliency: size of the gradient (largest over colours)"),
      (p ? h`<p>prediction: ${link(p.href, p.name)} (${abbr("p", "p")} = ${prob(p.probability, "not known")})</p><p>left: the input as the model sees it; right: ${abbr("saliency", "saliency")} (d logit / d pixel)</p>`
        : h`<p>no prediction: the model's logits are unknown</p><p>left: the input as the model sees it; right: saliency of the last layer's strongest unit</p>`),
      bars,
      h`${list(P.layers).map((l) => {
        const all = list(l.channels), maps = all.filter((c) => c.src), rest = all.filter((c) => !c.src);
        return h`<h2>${link(l.href, l.layer)} <span class="dim">(${shape(l.shape)}, ${l.activation}), strongest first</span></h2>${cbar(l.scale, "feature map, 0 to the layer's highest value on this image")}<div>${
          maps.map((c) => h`<span class="fmap">${img(c.src, "", "channel " + c.channel, true)}${link(c.href, c.name !== undefined ? c.name : "#" + c.channel)} ${fmt(c.value, 2)}</span>`)}</div>${
          rest.length ? h`<details><summary>${rest.length} ${maps.length ? "weaker " : ""}unit${rest.length === 1 ? "" : "s"} by mean value</summary><p class="list">${
            spaced(rest.map((c) => h`<span class="unit">${link(c.href, c.name !== undefined ? c.name : "#" + c.channel)} ${fmt(c.value, 2)}</span>`))}</p></details>` : ""}`;
      })}`,
      legend("p", "saliency", "map", "activation")));
  }

  // A channel page: the channel named after the # (the layer's first without one), its block loaded once.
  const shared = P, asked = {};
  function channelPage() {
    const wanted = location.hash.length > 1 ? location.hash.slice(1) : shared.first === null ? "" : String(shared.first);
    const c = /^[0-9]+$/.test(wanted) ? Number(wanted) : NaN, own = (window.CHANNELS || {})[c];
    if (own) {
      P = window.PAGE = Object.assign({}, shared, own);
      channel();
      document.title = String(P.title);
      window.scrollTo(0, 0);
      window.READY = performance.now();
      return;
    }
    const src = Number.isInteger(c) && num(shared.block) ? (shared.blocks || {})[Math.floor(c / shared.block)] : undefined;
    if (src === undefined || asked[src]) {
      show(h`${nav(h`<a href="${url(shared.layer_href)}">layer ${shared.layer}</a>`)}<h1>${shared.title}</h1><p class="dim">No channel ${wanted} in this layer's pages.</p>`);
      window.READY = performance.now();
      return;
    }
    asked[src] = true;
    const script = document.createElement("script");
    script.src = url(src);
    script.onload = script.onerror = channelPage;
    document.body.appendChild(script);
  }

  const render = {model, layer, channel: channelPage, class: klass, classes, image}[P.kind];
  if (P.kind === "channel") window.addEventListener("hashchange", channelPage);
  if (render) render();
  if (P.kind !== "channel") {
    document.title = String(P.title);
    window.READY = performance.now();
  }
})();
