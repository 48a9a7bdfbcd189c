"""The report's per-scenario drill-down: a sweep's scenarios, responses, labels, predictions,
each sample's reasoning and raw answer, and the run's choice for every target of its recorded
sets, embedded as gzip-compressed JSON and opened (decompressed, searched, paged) only when the
reader asks for it, so a large run stays a reasonable file.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from typing import Any

import pyarrow.parquet as pq

from pluralign.jobs.decisions import decisions_table
from pluralign.jobs.runs import SweepRun

JSONObj = dict[str, Any]

MAX_TARGETS = 500
"""Sets with more targets (the all-targets grid) are left out of the drill-down's choices."""


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or x != x else round(float(x), digits)


def payload(run: SweepRun) -> JSONObj:
    """What the drill-down shows, as one JSON object."""
    bench = run.bench
    samples: dict[str, list[list[Any]]] = {}
    if not run.is_choice_run:
        d = decisions_table(run).to_pydict()
        texts = any(r is not None for r in d["reasoning"]) or any(r is not None for r in d["raw"])
        multi = any(s > 0 for s in d["sample"])
        if texts or multi or any(e is not None for e in d["error"]):
            for i, sc in enumerate(d["scenario"]):
                samples.setdefault(sc, []).append(
                    [d["response"][i], d["attribute"][i], d["sample"][i],
                     _round(d["prediction"][i]), d["reasoning"][i], d["raw"][i], d["error"][i]])
    sets, choices = _choices(run)
    preds = run.predictions
    scenarios = []
    for i, sc in enumerate(bench.scenarios):
        lo, hi = int(bench.offsets[i]), int(bench.offsets[i + 1])
        scenarios.append({
            "id": sc.id, "prompt": sc.prompt, "responses": list(sc.responses),
            "labels": [[_round(v) for v in row] for row in bench.labels[lo:hi].tolist()],
            "predictions": None if preds is None else
            [[_round(v) for v in row] for row in preds[lo:hi].tolist()],
            "samples": samples.get(sc.id, []), "choices": choices.get(sc.id, {}),
        })
    return {"run": run.label, "scorer": run.scorer, "benchmark": bench.identity,
            "attributes": list(bench.attributes), "sets": sets, "scenarios": scenarios}


def _choices(run: SweepRun) -> tuple[list[JSONObj], dict[str, dict[str, list[Any]]]]:
    """The sets of per_scenario.parquet (at most :data:`MAX_TARGETS` targets each) and per
    scenario and set, for each target: [chosen, label-closest responses or None (a tie)]."""
    path = run.path / "per_scenario.parquet"
    if not path.is_file():
        return [], {}
    t = pq.read_table(path, columns=["set", "target", "scenario", "chosen", "correct",
                                     "counted"]).to_pydict()
    order: dict[str, dict[str, int]] = {}
    for s, target in zip(t["set"], t["target"], strict=True):
        targets = order.setdefault(s, {})
        targets.setdefault(target, len(targets))
    kept = {s: ts for s, ts in order.items() if len(ts) <= MAX_TARGETS}
    choices: dict[str, dict[str, list[Any]]] = {}
    for s, target, sc, chosen, correct, counted in zip(
            t["set"], t["target"], t["scenario"], t["chosen"], t["correct"], t["counted"],
            strict=True):
        if s not in kept:
            continue
        per = choices.setdefault(sc, {}).setdefault(s, [None] * len(kept[s]))
        per[kept[s][target]] = [chosen, correct if counted else None]
    return [{"name": s, "targets": list(ts)} for s, ts in kept.items()], choices


def encoded(run: SweepRun) -> str:
    """The payload gzip-compressed and base64-encoded (what the page embeds)."""
    raw = json.dumps(payload(run), separators=(",", ":"), ensure_ascii=False).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def block(index: int, label: str, data: str, n_scenarios: int) -> str:
    """The drill-down's section: a button, and the embedded data it opens."""
    size = f"{len(data) / 1e6:.2f} MB" if len(data) >= 1e6 else f"{len(data) / 1e3:.0f} KB"
    return (f'<div class="drill" data-drill="{index}"><button type="button" '
            f'data-open="{index}">Open the per-scenario drill-down ({n_scenarios} scenarios, '
            f'{size} embedded)</button><div class="drill-body"></div>'
            f'<script type="application/octet-stream" id="drill-{index}" '
            f'data-run="{html.escape(label)}">{data}</script></div>')


SCRIPT = r"""
(function(){
function el(tag, attrs, kids){var e=document.createElement(tag);attrs=attrs||{};
 for(var k in attrs){if(attrs[k]!==null&&attrs[k]!==undefined)e.setAttribute(k,attrs[k]);}
 (kids||[]).forEach(function(c){if(c===null||c===undefined)return;
  e.appendChild(c instanceof Node?c:document.createTextNode(String(c)));});return e;}
function num(x,d){return x===null||x===undefined?'—':Number(x).toFixed(d);}
async function decode(b64){var bin=atob(b64.trim());var bytes=new Uint8Array(bin.length);
 for(var i=0;i<bin.length;i++)bytes[i]=bin.charCodeAt(i);
 var stream=new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
 return await new Response(stream).json();}
function setShare(sc,name){var c=(sc.choices||{})[name];if(!c)return null;var ok=0,n=0;
 c.forEach(function(x){if(x[1]!==null){n++;if(x[1].indexOf(x[0])>=0)ok++;}});return n?100*ok/n:null;}
function detail(d,sc,box){var kids=[el('h4',{},[sc.id]),el('pre',{'class':'drill-text'},[sc.prompt])];
 d.sets.forEach(function(s){var c=(sc.choices||{})[s.name];if(!c)return;
  var rows=c.slice(0,60).map(function(x,t){return el('tr',{},[el('td',{},[s.targets[t]]),el('td',{},[x[0]]),
   el('td',{},[x[1]===null?'tie':x[1].join(', ')]),el('td',{},[x[1]===null?'—':(x[1].indexOf(x[0])>=0?'✓':'✗')])]);});
  kids.push(el('details',{},[el('summary',{},[s.name+': the run\'s choice per target ('+c.length+')']),
   el('table',{},[el('tr',{},['target','chosen','label-closest','right'].map(function(h){return el('th',{},[h]);}))].concat(rows))]));});
 sc.responses.forEach(function(text,r){var rows=d.attributes.map(function(a,j){
   var ss=sc.samples.filter(function(x){return x[0]===r&&x[1]===a;});
   return el('tr',{},[el('th',{},[a]),el('td',{},[num(sc.labels[r][j],2)]),
    el('td',{},[sc.predictions?num(sc.predictions[r][j],3):'—']),
    el('td',{},ss.map(function(x){return el('details',{},[el('summary',{},['sample '+x[2]+': '+(x[6]?'failed — '+x[6]:num(x[3],3))]),
     x[4]?el('p',{},['reasoning: '+x[4]]):null,x[5]?el('pre',{'class':'drill-raw'},[x[5]]):null]);}))]);});
  kids.push(el('div',{'class':'drill-response'},[el('h5',{},['response '+r]),el('pre',{'class':'drill-text'},[text]),
   el('table',{},[el('tr',{},['attribute','label','prediction','samples'].map(function(h){return el('th',{},[h]);}))].concat(rows))]));});
 box.replaceChildren.apply(box,kids);}
function render(d,body){var PAGE=50,page=0,q='';var info=el('p',{});var list=el('table',{'class':'drill-list'});
 var box=el('div',{'class':'drill-detail'});var pager=el('p',{});
 var search=el('input',{type:'search',placeholder:'search id, prompt or responses'});
 var hay=d.scenarios.map(function(s){return (s.id+' '+s.prompt+' '+s.responses.join(' ')).toLowerCase();});
 function draw(){var rows=[];d.scenarios.forEach(function(s,i){if(!q||hay[i].indexOf(q)>=0)rows.push(s);});
  var pages=Math.max(1,Math.ceil(rows.length/PAGE));page=Math.min(page,pages-1);
  info.textContent=rows.length+' of '+d.scenarios.length+' scenarios';
  var head=el('tr',{},['scenario','prompt','responses'].concat(d.sets.map(function(s){return s.name+' accuracy';})).map(function(h){return el('th',{},[h]);}));
  var trs=rows.slice(page*PAGE,page*PAGE+PAGE).map(function(s){var a=el('a',{href:'#'},[s.id]);
   a.addEventListener('click',function(ev){ev.preventDefault();detail(d,s,box);});
   return el('tr',{'data-scenario':s.id},[el('td',{},[a]),el('td',{},[s.prompt.slice(0,140)]),el('td',{},[s.responses.length])]
    .concat(d.sets.map(function(st){var v=setShare(s,st.name);return el('td',{},[v===null?'—':v.toFixed(0)+' %']);})));});
  list.replaceChildren.apply(list,[head].concat(trs));
  var prev=el('button',{type:'button'},['‹']);var next=el('button',{type:'button'},['›']);
  prev.disabled=page===0;next.disabled=page>=pages-1;
  prev.addEventListener('click',function(){page--;draw();});next.addEventListener('click',function(){page++;draw();});
  pager.replaceChildren(prev,' page '+(page+1)+' of '+pages+' ',next);}
 search.addEventListener('input',function(){q=search.value.trim().toLowerCase();page=0;draw();});
 body.replaceChildren(search,info,list,pager,box);draw();}
document.addEventListener('click',async function(ev){var b=ev.target.closest&&ev.target.closest('button[data-open]');
 if(!b)return;var i=b.getAttribute('data-open');var body=b.parentNode.querySelector('.drill-body');
 b.disabled=true;b.textContent='opening…';
 try{var d=await decode(document.getElementById('drill-'+i).textContent);render(d,body);b.remove();
  document.body.setAttribute('data-drill-open',i);}
 catch(e){b.textContent='could not open the drill-down: '+e;console.error(e);}});
})();
"""
"""The drill-down's script: decompress on demand, search, page, show one scenario."""
