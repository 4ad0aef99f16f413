"use strict";
// Renders the page described by window.PAGE (set by this page's data/*.js file).
(function () {
  const P = window.PAGE, main = document.getElementById("main");
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const fmt = (v, d = 3) => (v === null || v === undefined ? "n/a" : Number(v).toPrecision(d));
  const pct = (v) => (v === null || v === undefined ? "n/a" : (100 * v).toFixed(v < 0.01 ? 2 : 1) + "%");
  const link = (href, text) => (href ? `<a href="${esc(href)}">${text}</a>` : `<span class="nolink">${text}</span>`);
  const img = (src, cls, alt, lazy) => `<img class="px ${cls || ""}" src="${esc(src)}" alt="${esc(alt || "")}"${lazy ? ' loading="lazy"' : ""}>`;
  const notes = (list) => (list || []).map((n) => `<div class="note">${esc(n)}</div>`).join("");
  const nav = (extra) => `<nav class="top"><a href="index.html">model</a>${extra || ""}</nav>`;
  const tags = (r) => (r.dead ? '<span class="tag dead">dead</span>' : "") + (r.rare ? '<span class="tag rare">rarely active</span>' : "") +
    (r.reached === false ? '<span class="tag unreached">not reached</span>' : "");

  function model() {
    let h = nav() + `<h1>${esc(P.title)}</h1>` + notes(P.notes);
    if (P.layers.length) {
      h += "<h2>Layers</h2><table><tr><th>layer</th><th>type</th><th>shape</th><th>channels</th><th>live / dead</th><th>rarely active</th><th>not reached</th><th>median ratio</th></tr>";
      for (const l of P.layers) {
        h += `<tr><td>${link(l.href, esc(l.layer))}</td><td>${esc(l.type || "?")}</td><td>${l.shape ? l.shape.join("×") : "?"}</td><td>${l.channels}</td>` +
          `<td>${l.live === null ? "no dataset" : l.live + " / " + l.dead}</td><td>${l.rare}</td><td>${l.not_reached}</td><td>${fmt(l.median_ratio)}</td></tr>`;
      }
      h += "</table>";
    }
    if (P.classes.length) h += "<h2>Classes</h2><p class=\"list\">" + P.classes.map((c) => link(c.href, esc(c.name))).join(" ") + "</p>";
    if (P.images.length) {
      h += "<h2>Images</h2><p class=\"list\">";
      for (const i of P.images) h += `<a href="${esc(i.href)}">${img(i.thumb, "", i.source)} ${esc(i.prediction)} (p=${fmt(i.probability)})</a>`;
      h += "</p>";
    }
    main.innerHTML = h;
  }

  function layer() {
    const s = P.summary;
    let h = nav() + `<h1>${esc(P.title)}</h1>` + notes(P.notes) +
      `<p>${s.channels} channels` + (s.live === null ? " (no dataset: live/dead unknown)" : `, ${s.live} live, ${s.dead} dead`) +
      `, ${s.rare} rarely active (active on fewer than ${pct(P.rare_share)} of images), ${s.not_reached} not reached; median ratio ${fmt(s.median_ratio)} (live channels, rarely active left out)</p>` +
      '<p class="controls"><label>sort <select id="sort"><option value="c">index</option><option value="ratio">ratio</option><option value="active">how often active</option><option value="best">optimized activation</option></select></label>' +
      '<label><input type="checkbox" id="hideDead"> hide dead</label><label><input type="checkbox" id="hideRare"> hide rarely active</label>' +
      '<span id="shown"></span></p><div class="grid" id="grid"></div>';
    main.innerHTML = h;
    const grid = document.getElementById("grid"), sort = document.getElementById("sort");
    const hideDead = document.getElementById("hideDead"), hideRare = document.getElementById("hideRare");
    function draw() {
      const key = sort.value, rows = P.channels.filter((r) => !(hideDead.checked && r.dead) && !(hideRare.checked && r.rare));
      if (key !== "c") rows.sort((a, b) => (b[key] === null ? -Infinity : b[key]) - (a[key] === null ? -Infinity : a[key]) || a.c - b.c);
      grid.innerHTML = rows.map((r) => {
        const cls = r.dead ? "dead" : r.rare ? "rare" : r.reached ? "" : "unreached";
        const label = r.dead ? "dead" : r.rare ? "rare" : !r.reached ? "not reached" : r.ratio === null ? fmt(r.best) : "r " + fmt(r.ratio, 2);
        return `<a class="card ${cls}" href="${esc(r.href)}" data-c="${r.c}">${img(r.thumb, "", "channel " + r.c, true)}${r.c}${r.name !== undefined ? " " + esc(r.name) : ""}<br>${label}</a>`;
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
    const w = 360, hgt = 120, n = hist.counts.length, top = Math.max(...hist.counts, 1), step = w / n;
    const decade = (v) => v > 0 && Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-6;
    const edge = (v) => (v === 0 ? "0" : Number(v).toExponential(0).replace("e+", "e"));
    const range = (i) => (hist.upper[i] === 0 ? "≤ 0" : hist.upper[i] === null ? `≥ ${edge(hist.lower[i])}` :
      `${edge(hist.lower[i])} to ${edge(hist.upper[i])}`);
    const bars = hist.counts.map((c, i) => `<rect x="${i * step}" y="${hgt - (c / top) * hgt}" width="${Math.max(step - 1, 1)}" ` +
      `height="${(c / top) * hgt}"><title>${range(i)}: ${c} image${c === 1 ? "" : "s"}</title></rect>`).join("");
    const label = (x, text, anchor) => `<text x="${x}" y="${hgt + 14}" font-size="11" text-anchor="${anchor}">${esc(text)}</text>`;
    let labels = "";
    for (let i = 0; i <= n; i++) {
      const value = i < n ? hist.lower[i] : hist.upper[n - 1];
      const anchor = i === 0 ? "start" : i === n ? "end" : "middle";
      if (i === 0 && value === null) labels += label(0, "≤ 0", "start");
      else if (i === n && value === null) labels += label(w, `≥ ${edge(hist.lower[n - 1])}`, "end");
      else if (value !== null && (i === 0 || i === n || decade(value))) {
        if (i === 0 || i === n || (i * step > 24 && w - i * step > 24)) labels += label(i * step, edge(value), anchor);
      }
    }
    return `<svg class="hist" width="${w}" height="${hgt + 18}">${bars}${labels}</svg>` +
      `<p>images per bin of the activation (bins four per decade); lowest ${fmt(hist.low)}, highest ${fmt(hist.high)}</p>`;
  }

  function arrows() {
    document.addEventListener("keydown", (e) => {
      if (e.key === "ArrowLeft" && P.prev) location.href = P.prev;
      if (e.key === "ArrowRight" && P.next) location.href = P.next;
    });
  }
  const pager = () => `${P.prev ? `<a id="prev" href="${esc(P.prev)}">← previous</a>` : ""}${P.next ? `<a id="next" href="${esc(P.next)}">next →</a>` : ""}`;

  function channel() {
    const r = P.row;
    let h = nav(`<a href="${esc(P.layer_href)}">layer ${esc(P.layer)}</a>${pager()}`) + `<h1>${esc(P.title)}${tags(r)}</h1>` + notes(P.notes);
    h += `<p>optimized activation ${fmt(r.best)}; ratio ${r.ratio === null ? "n/a" : fmt(r.ratio)} (optimized / best real image)` +
      `; active on ${pct(r.active)} of the dataset's images${r.rare ? " — rarely active, left out of ratio summaries" : ""}</p>`;
    h += `<h2>Optimized image${P.optimized.length > 1 ? "s" : ""}</h2><div class="big">` +
      P.optimized.map((o) => `<span class="ex">${img(o.src, "", "optimized")}${fmt(o.activation)}</span>`).join("") + "</div>";
    if (P.examples.length) {
      h += `<h2>Real images that excite it most${P.neuron ? " (green box: the centre position the run maximizes)" : ""}</h2><div>` +
        P.examples.map((e) => `<span class="ex">${img(e.src, "", "example " + e.index)}#${e.index}${e.label !== null ? " (" + esc(e.label) + ")" : ""}: ${fmt(e.value)}</span>`).join("") + "</div>";
    }
    if (P.hist) h += `<h2>Activation over the dataset</h2>${histogram(P.hist)}`;
    if (P.inputs.length) {
      h += "<h2>Inputs: previous layer's channels that contribute most</h2><p class=\"list\">" +
        P.inputs.map((i) => link(i.href, (i.thumb ? img(i.thumb, "", "") : "") + `${esc(i.layer)} ${i.channel} (${fmt(i.value)})`)).join("") + "</p>";
    }
    if (P.outputs.length) {
      h += "<h2>Outputs: classes it raises most</h2><p class=\"list\">" + P.outputs.map((o) => link(o.href, `${esc(o.name)} (${fmt(o.value)})`)).join("") + "</p>";
    }
    main.innerHTML = h;
    arrows();
  }

  function klass() {
    let h = nav(pager()) + `<h1>${esc(P.title)}</h1>` + notes(P.notes);
    if (P.image) h += `<h2>Optimized for this class</h2><div class="big">${img(P.image.src, "", "class image")}</div><p>p = ${fmt(P.image.probability)}</p>`;
    if (P.heldout) h += `<p>held-out: ${P.heldout.correct} of ${P.heldout.count} images of this class classified correctly (${esc(P.heldout.source)})</p>`;
    if (P.top.length) h += "<h2>Real images the model scores highest</h2><div>" + P.top.map((t) => `<span class="ex">${img(t.src, "", "image " + t.index)}${esc(t.label)}: ${fmt(t.score)}</span>`).join("") + "</div>";
    if (P.confusions.length) h += "<h2>Confused with</h2><table><tr><th>class</th><th>this class taken for it</th><th>it taken for this class</th></tr>" +
      P.confusions.map((c) => `<tr><td>${link(c.href, esc(c.name))}</td><td>${c.count}</td><td>${c.as_this}</td></tr>`).join("") + "</table>";
    if (P.channels.length) h += "<h2>Channels that contribute most</h2><p class=\"list\">" +
      P.channels.map((c) => link(c.href, img(c.thumb, "", "") + `${esc(c.layer)} ${c.channel} (${fmt(c.value)})`)).join("") + "</p>";
    main.innerHTML = h;
    arrows();
  }

  function image() {
    let h = nav() + `<h1>${esc(P.title)}</h1>` + notes(P.notes);
    h += `<div class="big">${img(P.input_src, "", "input")}${img(P.saliency_src, "", "saliency")}</div>`;
    h += P.prediction ? `<p>prediction: ${link(P.prediction.href, esc(P.prediction.name))} (p=${fmt(P.prediction.probability)}); top-5: ` +
      P.top5.map((t) => `${esc(t.name)} ${fmt(t.probability)}`).join(", ") + "</p><p>left: the input as the model sees it; right: saliency (d logit / d pixel)</p>"
      : "<p>no prediction: the model's logits are unknown</p><p>left: the input as the model sees it; right: saliency of the last layer's strongest unit</p>";
    for (const l of P.layers) {
      h += `<h2>${link(l.href, esc(l.layer))} (${l.shape.join("×")}, ${esc(l.activation)}), strongest first</h2><div>`;
      h += l.channels.map((c) => `<span class="fmap">${c.src ? img(c.src, "", "channel " + c.channel, true) : ""}${link(c.href, (c.name !== undefined ? esc(c.name) : "#" + c.channel))} ${fmt(c.value, 2)}</span>`).join("");
      h += "</div>";
    }
    main.innerHTML = h;
  }

  ({model, layer, channel, class: klass, image})[P.kind]();
  document.title = P.title;
  window.READY = performance.now();
})();
