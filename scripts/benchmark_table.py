#!/usr/bin/env python3
"""Markdown comparison table from a `tq benchmark --format json` report.

One row per (input, codec) with the pooled K/V bits from real bytes, NMSE of K and V, the
inner-product bias and RMS error of K against the dump's queries, attention KL with its
block-bootstrap interval and top-1 agreement. Standard library only.

    scripts/benchmark_table.py report.json > table.md
"""
import json
import sys


def fmt(x, spec="{:.3g}"):
    return "—" if x is None else spec.format(x)


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: scripts/benchmark_table.py REPORT.json")
    try:
        with open(argv[1], encoding="utf-8") as f:
            rep = json.load(f)
        summary = {(r["input"], r["codec"], r["tensor"]): r for r in rep["summary"]}
        attn = {(r["input"], r["codec_k"]): r for r in rep.get("attn_summary", [])}
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"benchmark_table: {argv[1]}: not a tq benchmark JSON report ({e})")
    inputs, codecs = [], []
    for r in rep["summary"]:
        if r["input"] not in inputs:
            inputs.append(r["input"])
        if r["codec"] not in codecs:
            codecs.append(r["codec"])
    print("| codec | bits/el K, V | NMSE K | NMSE V | ip_bias | ip_rms | attn_kl (95% CI) | attn_top1 |")
    print("|---|---|---|---|---|---|---|---|")
    for inp in inputs:
        if len(inputs) > 1:
            print(f"| **{inp}** | | | | | | | |")
        for c in codecs:
            k, v = summary.get((inp, c, "k")), summary.get((inp, c, "v"))
            if k is None or v is None:
                continue
            a = attn.get((inp, c), {})
            kl = a.get("attn_kl")
            ci = f" ({fmt(a.get('attn_kl_ci_lo'))}–{fmt(a.get('attn_kl_ci_hi'))})" if kl is not None else ""
            print(f"| `{c}` | {k['bits_per_element']:.2f}, {v['bits_per_element']:.2f} | {fmt(k['nmse'])} | "
                  f"{fmt(v['nmse'])} | {fmt(k.get('ip_bias'), '{:+.3f}')} | {fmt(k.get('ip_rms'))} | "
                  f"{fmt(kl)}{ci} | {fmt(a.get('attn_top1'))} |")


if __name__ == "__main__":
    main(sys.argv)
