"""Markdown and CSV tables of an Evaluation: the per-lead headline (skill against the strongest baseline, named),
each metric for the model beside every baseline, bubble metrics, VMAF (or why it does not rank), and per condition."""

from __future__ import annotations

import math

# The tables take a bubbles.evaluation.evaluate.Evaluation (named in annotations only, never imported: evaluate
# imports this module to give an Evaluation its tables, and the import stays one-way).

# (field, column title, format); a metric is shown when the model has values for it.
COMPARED = (
    ("mse", "MSE", ".5f"),
    ("ssim", "SSIM", ".3f"),
    ("psnr", "PSNR dB", ".2f"),
    ("sharpness", "sharpness (1 = as sharp as the target)", ".3f"),
)
MASK_COMPARED = (  # masks (segmented recordings) only
    ("iou", "IoU of vapour (prediction and target > 0.5)", ".3f"),
    ("vapour_fraction_error", "vapour-fraction error (|predicted − true share of vapour pixels|)", ".4f"),
)
VMAF_FLOOR = 1.0  # below this every column reads as zero
VMAF_TIE = 1.0  # spread between the best and the worst column that counts as a tie


def _cell(value: float, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _compare(ev: Evaluation, name: str, title: str, fmt: str) -> list[str]:
    columns = {"model": getattr(ev.model, name)} | {b: getattr(m, name) for b, m in ev.baselines.items()}
    columns = {k: v for k, v in columns.items() if len(v)}
    lines = [f"{title} per lead:", "", "| lead | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for k in range(len(ev.model.mse)):
        lines.append(f"| {k + 1} | " + " | ".join(_cell(v[k], fmt) for v in columns.values()) + " |")
    return lines + [""]


def vmaf_lines(vmaf: dict[str, tuple[float, ...]] | None, note: str) -> list[str]:
    """VMAF per lead for the model and the baselines, or the reason it is missing or does not rank these frames."""
    if vmaf is None:
        return [note] if note and note != "not computed" else []
    values = [v for column in vmaf.values() for v in column]
    spread = [max(c[k] for c in vmaf.values()) - min(c[k] for c in vmaf.values()) for k in range(len(vmaf["model"]))]
    if max(values, default=0.0) < VMAF_FLOOR or max(spread, default=0.0) < VMAF_TIE:
        return [f"VMAF does not rank these frames: every column scores {'≈0' if max(values, default=0) < VMAF_FLOOR else 'the same'} "
                f"(max {max(values, default=0):.2f}, largest spread between columns {max(spread, default=0):.2f})."]
    lines = ["VMAF per lead (vmaf_v0.6.1; loosely interpretable on small grayscale frames):", "",
             "| lead | " + " | ".join(vmaf) + " |", "|" + "---|" * (len(vmaf) + 1)]
    lines += [f"| {k + 1} | " + " | ".join(f"{c[k]:.1f}" for c in vmaf.values()) + " |" for k in range(len(vmaf["model"]))]
    return lines


def lead_tables(ev: Evaluation) -> str:
    """The headline per lead (model, strongest baseline by MSE, skill against it and against persistence), then one
    table per metric with every baseline beside the model."""
    head = "| lead | SSIM | PSNR dB | MSE | strongest baseline | its MSE | skill_vs_strongest | skill_vs_persistence |"
    lines = [head, "|" + "---|" * 8]
    for k, best in enumerate(ev.strongest):
        lines.append(
            f"| {k + 1} | {ev.model.ssim[k]:.3f} | {ev.model.psnr[k]:.2f} | {ev.model.mse[k]:.5f} | {best} | "
            f"{ev.baselines[best].mse[k]:.5f} | {ev.skill_vs_strongest[k]:+.3f} | {ev.skill_vs_persistence[k]:+.3f} |"
        )
    lines.append("")
    for name, title, fmt in COMPARED + (MASK_COMPARED if getattr(ev, "mask", False) else ()):
        if len(getattr(ev.model, name)):
            lines += _compare(ev, name, title, fmt)
    lines += bubble_lines(ev)
    lines += vmaf_lines(ev.vmaf, ev.vmaf_note)
    return "\n".join(lines).rstrip()


def bubble_lines(ev: Evaluation) -> list[str]:
    """Bubble F1 per lead of the model beside every baseline, then the model's matching errors (bubbles.py)."""
    if not ev.bubbles:
        return []
    b = ev.bubbles
    columns = {"model": b["bubble_f1"]} | ev.baseline_bubble_f1
    lines = ["bubble F1 per lead:", "", "| lead | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    lines += [f"| {k + 1} | " + " | ".join(_cell(v[k], ".3f") for v in columns.values()) + " |" for k in range(len(b["bubble_f1"]))]
    lines += ["", "the model's bubbles per lead:", "",
              "| lead | precision | recall | count err. | diameter err. px | diameter err. % of height | centroid err. px |",
              "|" + "---|" * 7]
    for k in range(len(b["bubble_f1"])):
        lines.append(f"| {k + 1} | {_cell(b['bubble_precision'][k], '.3f')} | {_cell(b['bubble_recall'][k], '.3f')} | "
                     f"{_cell(b['bubble_count_error'][k], '.2f')} | {_cell(b['bubble_diameter_error_px'][k], '.2f')} | "
                     f"{_cell(b['bubble_diameter_error_pct'][k], '.1f')} | {_cell(b['bubble_centroid_error_px'][k], '.2f')} |")
    return lines + [""]


def field_lines(per_field: dict[str, dict[str, float]]) -> str:
    """Several target fields: each one's means over leads (the tables above are the first field's)."""
    if not per_field:
        return ""
    lines = ["", "", f"per predicted field (mean over leads; the tables above are {next(iter(per_field))}'s):", "",
             "| field | SSIM | PSNR dB | MSE | MAE | skill_vs_persistence |", "|" + "---|" * 6]
    lines += [f"| {name} | {_cell(r['ssim'], '.3f')} | {_cell(r['psnr'], '.2f')} | {_cell(r['mse'], '.5f')} | "
              f"{_cell(r['mae'], '.4f')} | {_cell(r['skill_vs_persistence'], '+.3f')} |" for name, r in per_field.items()]
    return "\n".join(lines)


def condition_csv(per_condition: dict[str, dict[str, float]]) -> str:
    """Per held-out condition (CSV): the columns every row has, in a fixed order."""
    if not per_condition:
        return "condition\n"
    cols = [c for c in next(iter(per_condition.values())) if all(c in row for row in per_condition.values())]
    lines = ["condition," + ",".join(cols)]
    for cid, row in sorted(per_condition.items()):
        lines.append(cid + "," + ",".join(f"{row[c]:.6g}" for c in cols))
    return "\n".join(lines) + "\n"
