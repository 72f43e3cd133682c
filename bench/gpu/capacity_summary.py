#!/usr/bin/env python3
"""One line from a `gemma3 capacity --grid` results.json (bench/gpu/capacity_*.sh): the fitted
slope of capacity against parameters (the paper's 3.6 bits/param), each model's bits/param and
converged cells, the observed double-descent peak against the predicted N*, and cell throughput."""
import json, sys

d = json.load(open(sys.argv[1]))
wall = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
cells, s = d["cells"], d["summary"]
steps = sum(c["steps"] for c in cells)
models = []
for m in s["models"]:
    mc = [c for c in cells if c["layers"] == m["layers"] and c["width"] == m["width"] and c["precision"] == m["precision"]]
    conv = "".join("y" if c["converged"] else "n" for c in sorted(mc, key=lambda c: c["sequences"]))
    bpp = m["bits_per_param"]
    pred, obs = m["predicted_peak_sequences"], m["observed_peak_sequences"]
    dd = "peak N %d vs N* %s" % (obs, "%.0f" % pred if pred else "-")
    if pred:
        r = obs / pred
        dd += " (x%.2f%s)" % (r, ", within 2x" if 0.5 <= r <= 2 else ", OUTSIDE 2x")
    lim = " (data-limited: lower bound, not in the fit)" if m.get("capacity_data_limited") else ""
    models.append("L%dxD%d %s bits/param=%s%s conv=%s %s" % (m["layers"], m["width"], m["precision"],
                  "%.2f" % bpp if bpp is not None else "-", lim, conv, dd))
s0 = s["slope_through_origin"]
band = [m["bits_per_param"] for m in s["models"] if m["bits_per_param"] is not None and not m.get("capacity_data_limited")]
ok_band = all(2.9 <= b <= 4.2 for b in band) and band
ok_slope = s0 is not None and abs(s0 / 3.6 - 1) <= 0.15
print("capacity: slope %s bits/param (through origin; %s vs 3.6 +-15%%; with intercept %s) over %d models; band 2.9-4.2 %s; "
      "%d cells, %d converged, %d steps%s | %s" % (
          "%.3f" % s0 if s0 is not None else "-", "inside" if ok_slope else "OUTSIDE",
          "%.3f" % s["slope"] if s["slope"] is not None else "-", s["fit_models"], "all inside" if ok_band else "NOT all inside",
          len(cells), sum(c["converged"] for c in cells), steps,
          ", %.0f cell-steps/s over %.0f s" % (steps / wall, wall) if wall > 0 else "", " ; ".join(models)))
