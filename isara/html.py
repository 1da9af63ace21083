"""report/index.html: one self-contained page (no network: styles, script, plots and data inline).

The page holds the model table, the paired comparisons, the teacher metrics, the plots, and a
browser over every labelled pair of every run, filtered and searched in the page itself.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

PAGE_ROWS = 100  # pairs drawn at a time: the paper profile's thousands of rows stay quick to filter


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text))


def _json_for_script(obj: object) -> str:
    """JSON that cannot close its <script> element early (no '<', '>' or '&' left literal)."""
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}"><figcaption>{_e(alt)}</figcaption></figure>'
    )


MARKS = {"better": "better", "worse": "worse", "not separable at this sample size": "ns"}


def table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table of plain-text cells; verdicts are coloured."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    cell = lambda c: f'<td class="{MARKS[c]}">{_e(c)}</td>' if c in MARKS else f"<td>{_e(c)}</td>"  # noqa: E731
    body = "".join("<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232a;background:#fafbfc}
main{max-width:1200px;margin:0 auto;padding:1rem 1.5rem 4rem}
h1{margin:.5rem 0 0}h2{margin-top:2.2rem;border-bottom:1px solid #d8dde3;padding-bottom:.25rem}
p.note{color:#4a5563;max-width:75ch}
table{border-collapse:collapse;margin:.6rem 0;background:#fff}
th,td{border:1px solid #d8dde3;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.better{color:#16692f;font-weight:600}.worse{color:#a32020;font-weight:600}.ns{color:#5b6470}
figure{display:inline-block;margin:.5rem 1rem .5rem 0;background:#fff;border:1px solid #d8dde3;padding:.4rem}
figure img{max-width:560px;display:block}figcaption{font-size:12px;color:#5b6470}
#filters{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end;margin:.5rem 0;
  background:#fff;border:1px solid #d8dde3;padding:.6rem}
#filters label{display:flex;flex-direction:column;font-size:12px;color:#4a5563}
#filters input[type=search]{min-width:18rem}
#pairs td{max-width:30rem}#pairs tr.pair{cursor:pointer}#pairs tr.pair:hover{background:#f3f6fa}
#pairs tr.detail td{background:#f7f9fb}
.tag{display:inline-block;border-radius:3px;padding:0 .35rem;font-size:12px;background:#e7ebef}
.tag.rej{background:#f8e1e1}.tag.acc{background:#dff2e3}.tag.flag{background:#fde9c8}
ol.ctx{margin:.2rem 0 .6rem 1.2rem;padding:0}ol.ctx li{margin:.15rem 0}
.muted{color:#6b7480}.pager{margin:.5rem 0}.pager button{margin-right:.4rem}
"""

SCRIPT = """
(function () {
  const data = JSON.parse(document.getElementById("pairs-data").textContent);
  const pool = data.pool, rows = data.rows, cut = data.threshold, per = data.page_rows;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"]/g,
    (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]);
  const fill = (sel, values) => values.forEach((v) => {
    const o = document.createElement("option"); o.value = v; o.textContent = v; sel.appendChild(o);
  });
  fill($("f-run"), [...new Set(rows.map((r) => r.run))]);
  fill($("f-reason"), [...new Set(rows.map((r) => r.reason).filter((v) => v))].sort());
  $("total").textContent = rows.length;
  let page = 0, shown = [];
  const yes = (v, want) => want === "" || (want === "yes") === v;
  function matches(r) {
    const q = $("f-text").value.trim().toLowerCase();
    const status = $("f-status").value, reason = $("f-reason").value;
    return ($("f-run").value === "" || r.run === $("f-run").value)
      && (status === "" || (status === "accepted") === (r.reason === null))
      && (reason === "" || r.reason === reason)
      && yes(r.harm >= cut, $("f-harm").value) && yes(r.refusal >= cut, $("f-refusal").value)
      && (q === "" || (r.question + "\\n" + r.answer).toLowerCase().includes(q));
  }
  function examples(ids, dists) {
    if (!ids.length) return '<span class="muted">none</span>';
    return '<ol class="ctx">' + ids.map((id, i) => {
      const p = pool[id] || {q: "(not in any pool file)", a: "", o: "?"};
      const d = dists ? ` <span class="muted">distance ${dists[i].toFixed(3)}</span>` : "";
      return `<li><span class="tag">${esc(p.o)}</span>${d} <b>Q:</b> ${esc(p.q)}<br><b>A:</b> ${esc(p.a)}</li>`;
    }).join("") + "</ol>";
  }
  function detail(r) {
    return `<td colspan="7"><b>Proposal contexts</b> (what the model saw when it wrote the question)` +
      examples(r.contexts, null) + `<b>Labelling neighbours</b> (nearest pool pairs, shown before the answer)` +
      examples(r.neighbors, r.dists) +
      `<b>Filter</b>: ROUGE-L vs contexts ${r.rouge_context.toFixed(3)}, vs pool ${r.rouge_pool.toFixed(3)}; ` +
      `${r.q_words} question words, ${r.a_words} answer words. ` +
      `<b>Nearest seed question</b>: similarity ${r.seed_sim.toFixed(3)}. ` +
      `<b>Written by</b> ${esc(r.writer)} <span class="muted">(checkpoint ${esc(r.model_ref)})</span>. ` +
      `<b>Raw continuation</b>: <span class="muted">${esc(r.raw)}</span></td>`;
  }
  function draw() {
    const body = $("pairs").querySelector("tbody");
    body.textContent = "";
    const start = page * per, end = Math.min(shown.length, start + per);
    shown.slice(start, end).forEach((r) => {
      const tr = document.createElement("tr");
      tr.className = "pair";
      const status = r.reason === null ? '<span class="tag acc">accepted</span>'
        : `<span class="tag rej">${esc(r.reason)}</span>`;
      const flag = (v) => v >= cut ? `<span class="tag flag">${v.toFixed(2)}</span>` : v.toFixed(2);
      tr.innerHTML = `<td>${esc(r.run)}</td><td>${status}</td><td>${esc(r.question)}</td>` +
        `<td>${esc(r.answer)}</td><td class="num">${flag(r.harm)}</td><td class="num">${flag(r.refusal)}</td>` +
        `<td class="num">${r.neighbors.length - r.generated_neighbors}/${r.neighbors.length}</td>`;
      tr.addEventListener("click", () => {
        const next = tr.nextSibling;
        if (next && next.className === "detail") { next.remove(); return; }
        const d = document.createElement("tr"); d.className = "detail"; d.innerHTML = detail(r);
        tr.after(d);
      });
      body.appendChild(tr);
    });
    $("count").textContent = shown.length;
    $("range").textContent = shown.length ? `${start + 1}-${end}` : "0";
    $("prev").disabled = page === 0;
    $("next").disabled = end >= shown.length;
  }
  function apply() { shown = rows.filter(matches); page = 0; draw(); }
  ["f-run", "f-status", "f-reason", "f-harm", "f-refusal"].forEach((id) => $(id).addEventListener("change", apply));
  $("f-text").addEventListener("input", apply);
  $("prev").addEventListener("click", () => { page -= 1; draw(); });
  $("next").addEventListener("click", () => { page += 1; draw(); });
  apply();
})();
"""

BROWSER = """
<div id="filters">
  <label>run<select id="f-run"><option value="">all</option></select></label>
  <label>status<select id="f-status"><option value="">all</option><option>accepted</option>
    <option>rejected</option></select></label>
  <label>reject reason<select id="f-reason"><option value="">any</option></select></label>
  <label>judged harmful<select id="f-harm"><option value="">any</option><option>yes</option>
    <option>no</option></select></label>
  <label>judged refusal<select id="f-refusal"><option value="">any</option><option>yes</option>
    <option>no</option></select></label>
  <label>search question or answer<input id="f-text" type="search" placeholder="text"></label>
</div>
<p><b id="count">0</b> of <b id="total">0</b> pairs match; showing <span id="range">0</span>.
  <span class="muted">Click a row for its contexts, neighbours, filter scores and writer.</span></p>
<div class="pager"><button id="prev">previous</button><button id="next">next</button></div>
<table id="pairs"><thead><tr><th>run</th><th>status</th><th>question</th><th>answer</th>
  <th>harm</th><th>refusal</th><th>seed neighbours</th></tr></thead><tbody></tbody></table>
"""


def page(title: str, sections: list[tuple[str, str]], pairs: dict) -> str:
    """The whole document: sections (heading, HTML body) in order, then the pair browser over `pairs`."""
    nav = " · ".join(f'<a href="#s{i}">{_e(h)}</a>' for i, (h, _) in enumerate(sections))
    body = "".join(f'<h2 id="s{i}">{_e(h)}</h2>{content}' for i, (h, content) in enumerate(sections))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # no request may leave the file: the browser is told so, not only asked politely
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f'<style>{CSS}</style></head><body><main><h1>{_e(title)}</h1><p>{nav} · <a href="#browse">pairs</a></p>'
        f'{body}<h2 id="browse">Every labelled pair</h2>{BROWSER}'
        f'<script type="application/json" id="pairs-data">{_json_for_script(pairs)}</script>'
        f"<script>{SCRIPT}</script></main></body></html>\n"
    )
