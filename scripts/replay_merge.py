#!/usr/bin/env python3
"""Merge JSON reports of `scripts/dump_kv.py --replay ... --replay-format json` (and of
scripts/peer_llamacpp_kv.py) into one table, recomputing the Spearman rank correlation of each
proxy with KL over all merged `layers = all` rows that carry proxies.

Replay rows are independent of each other (each depends only on its spec, the seed and the
tokens), so splitting a spec list over several runs (e.g. in parallel) and merging gives the rows
one run would give. The reports must come from the same tokens (checked: n_tokens and the
reference mean NLL).

    scripts/replay_merge.py a.json b.json --format md
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dumpkv import replay as rp  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(prog="replay_merge.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+")
    p.add_argument("--format", choices=("table", "md", "csv", "json"), default="table")
    args = p.parse_args(argv)
    rows, n_tokens, ref_nll, seed = [], None, None, 0
    for path in args.reports:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            print(f"replay_merge.py: error: {path}: {e}", file=sys.stderr)
            return 1
        if n_tokens is None:
            n_tokens, seed = doc["n_tokens"], doc.get("seed", 0)
            ref_nll = doc["reference"]["nll"] if doc.get("reference") else None
        elif doc["n_tokens"] != n_tokens:
            print(f"replay_merge.py: error: {path}: {doc['n_tokens']} tokens, the first report has "
                  f"{n_tokens}", file=sys.stderr)
            return 1
        rows += doc["rows"]
    res = dict(rows=rows, n_tokens=n_tokens, n_predicted=n_tokens - 1, seed=seed)
    full = [r for r in rows if r["layers"] == "all" and r.get("nmse") is not None]
    if full:
        res["spearman"] = {k: rp.spearman([r[k] for r in full], [r["kl"] for r in full])
                           for k in ("nmse", "ip_rms", "attn_kl")}
        res["spearman_n"] = len(full)
    for r in rows:  # peer rows have no proxies
        for k in ("nmse", "ip_rms", "attn_kl"):
            r.setdefault(k, float("nan"))
            if r[k] is None:
                r[k] = float("nan")
    sys.stdout.write(rp.render(res, args.format, dict(merged_from=[os.path.basename(x) for x in args.reports],
                                                      reference_nll=ref_nll)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
