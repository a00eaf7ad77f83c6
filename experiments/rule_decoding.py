"""Deciding consistent tag sets by expected F2 under Planet's rule, against the shipped
rule (thresholds, then the most likely weather label and nothing else when cloudy).

The shipped stage decides each label by its threshold and then imposes the rule; this
experiment asks which consistent set a chip's probabilities make most worth predicting.
The probabilities are modelled with the rule's own structure: the weather is one of four
(a multinomial logistic regression on the recalibrated scores), and the land labels are
independent given the weather (each land label's score calibrated by a logistic curve,
divided by the chance the chip is not cloudy). For a candidate set {w} + L:

    E[F2] = q_w G(1, L) + (1 - q_w - q_cloudy) G(0, L),    and q_cloudy for {cloudy},

with G(d, L) the expected F2 when d of the one true weather label is in the set and the
land labels follow their probabilities (``h`` inside L, ``r`` outside, Poisson-binomial):
5(d + h) / (4(1 + h + r) + 1 + |L|). The best L is a top-k of the land probabilities.

Also scored: the multinomial weather choice with the land labels left to the shipped
thresholds, and land thresholds refitted per chosen weather label.

Everything is fitted on 4/5 of a model's stored validation outputs and scored on the
rest (5 folds x 2 shuffles, the splits of ``classifier.evaluation.cv_scores``), paired
with the shipped post-processing. The calibrations are fitted on the ridge layer's
cross-fitted scores, as the thresholds are. Nothing here touches the test split.

    python -m experiments.rule_decoding [--model classifier/default_model]

Result on ``planet32-effl0x2-128`` (2026-12-05, 1 min): none beats the shipped stage by
more than its standard error; see the model card.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression

from classifier.calibration import cross_fitted_scores
from classifier.consistency import TagRule
from classifier.evaluation import StoredModel, cv_scores, cv_splits, paired
from classifier.metrics import f2_score
from classifier.postprocess import fit_postprocessor, layer_inputs
from classifier.thresholds import poisson_binomial

GROUPS = [["clear"], ["partly_cloudy"], ["haze"]]


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def expected_land_f2(land: np.ndarray, hit: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the best top-k of the land probabilities and its expected F2 when the
    set's one weather label is right with probability ``hit`` (array per row)."""
    n, m = land.shape
    order = np.argsort(-land, axis=1)
    ranked = np.take_along_axis(land, order, axis=1)
    best = np.full(n, -1.0)
    best_k = np.zeros(n, dtype=int)
    for k in range(m + 1):
        inside = poisson_binomial(ranked[:, :k])
        outside = poisson_binomial(ranked[:, k:])
        h = np.arange(k + 1)[:, None]
        r = np.arange(m - k + 1)[None, :]
        denom = 4 * (1 + h + r) + 1 + k
        right = np.einsum("nh,hr,nr->n", inside, 5 * (1 + h) / denom, outside)
        wrong = np.einsum("nh,hr,nr->n", inside, 5 * h / denom, outside)
        value = hit[:, 0] * right + hit[:, 1] * wrong
        better = value > best + 1e-12
        best[better], best_k[better] = value[better], k
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(m), order.shape), axis=1)
    return ranks < best_k[:, None], best


class RuleDecoder:
    """The calibrations of the expected-F2 decision under the rule."""

    def __init__(self, rule: TagRule, weather_c: float = 1.0, weather_inputs: str = "all",
                 land_given_clear: bool = True) -> None:
        self.rule = rule
        self.weather_c = weather_c
        self.weather_inputs = weather_inputs
        self.land_given_clear = land_given_clear

    def _weather_x(self, scores: np.ndarray) -> np.ndarray:
        cols = list(self.rule.weather) if self.weather_inputs == "weather" else slice(None)
        return logit(scores[:, cols])

    def fit(self, y: np.ndarray, scores: np.ndarray) -> RuleDecoder:
        weather = list(self.rule.weather)
        self.land = [j for j in range(y.shape[1]) if j not in weather]
        target = np.argmax(y[:, weather], axis=1)
        self.weather_model = LogisticRegression(C=self.weather_c, max_iter=2000).fit(
            self._weather_x(scores), target)
        self.land_models = []
        not_cloudy = ~y[:, self.rule.overcast].astype(bool)
        for j in self.land:
            rows = not_cloudy if self.land_given_clear else slice(None)
            yj = y[rows, j]
            if yj.sum() < 3:
                self.land_models.append(float(yj.mean()))
                continue
            self.land_models.append(LogisticRegression(C=10.0, max_iter=1000).fit(
                logit(scores[rows, j:j + 1]), yj))
        return self

    def probabilities(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.zeros((len(scores), 4))
        q[:, self.weather_model.classes_] = self.weather_model.predict_proba(
            self._weather_x(scores))
        land = np.column_stack([
            np.full(len(scores), m) if isinstance(m, float)
            else m.predict_proba(logit(scores[:, j:j + 1]))[:, 1]
            for j, m in zip(self.land, self.land_models)])
        if not self.land_given_clear:
            cloudy = q[:, list(self.rule.weather).index(self.rule.overcast)]
            land = np.clip(land / np.maximum(1 - cloudy, 1e-3)[:, None], 0, 1)
        return q, land

    def decide(self, scores: np.ndarray) -> np.ndarray:
        q, land = self.probabilities(scores)
        weather = np.asarray(self.rule.weather)
        c = list(self.rule.weather).index(self.rule.overcast)
        q_clear = q.copy()
        q_clear[:, c] = -1
        w = np.argmax(q_clear, axis=1)
        q_w = q[np.arange(len(q)), w]
        hit = np.column_stack([q_w, 1 - q_w - q[:, c]])
        chosen, value = expected_land_f2(land, hit)
        out = np.zeros(scores.shape, dtype=bool)
        out[:, self.land] = chosen
        out[np.arange(len(out)), weather[w]] = True
        cloudy = q[:, c] > value
        out[cloudy] = False
        out[cloudy, self.rule.overcast] = True
        return out


def shipped_folds(model: StoredModel):
    """Per split of ``cv_scores``: the shipped post-processing fitted on the fit part, the
    ridge layer's cross-fitted scores there (what thresholds are tuned on), the held
    part's scores and its targets."""
    val, labels = model.val, model.labels
    y = val.targets
    p_original, p_dehazed = val.get("original", 8), val.get("dehazed", 8)

    def part(p, rows):
        return None if p is None else p[rows]

    for fit, held in cv_splits(len(y)):
        post = fit_postprocessor(model.shipped.post, y[fit], p_original[fit],
                                 part(p_dehazed, fit), 0, labels)
        inputs = layer_inputs(post.config, p_original[fit], part(p_dehazed, fit),
                              post.use_dehazed)
        crossed = cross_fitted_scores(post.config.calibration, inputs, y[fit], seed=0)
        yield post, y[fit], crossed, post.scores(p_original[held], part(p_dehazed, held)), \
            y[held]


def decoder_cv(model: StoredModel, make, mix_thresholds: bool = False) -> np.ndarray:
    """``make(rule)``'s decoder fitted per split on the cross-fitted ridge scores;
    ``mix_thresholds``: land labels by the shipped thresholds, the weather (and cloudy)
    by the decoder."""
    out = []
    for post, y_fit, crossed, held_scores, y_held in shipped_folds(model):
        decoder = make(post.rule).fit(y_fit, crossed)
        decided = decoder.decide(held_scores)
        if mix_thresholds:
            land = decoder.land
            decided[:, land] = post.decide(held_scores)[:, land]
            cloudy = decided[:, post.rule.overcast].copy()
            decided[cloudy] = False
            decided[cloudy, post.rule.overcast] = True
        out.append(f2_score(y_held, decided))
    return np.asarray(out)


def weather_group_cv(model: StoredModel, groups: list[list[str]]) -> np.ndarray:
    """Land thresholds refitted separately on the chips of each group of chosen weather
    labels (sample-averaged F2 adds up over chips, so each group's fit is exact); chips
    outside every group keep the shipped thresholds."""
    out = []
    for post, y_fit, crossed, held_scores, y_held in shipped_folds(model):
        rule = post.rule
        weather = np.asarray(rule.weather)
        decided = post.decide(held_scores)
        chosen_fit = weather[np.argmax(crossed[:, weather], axis=1)]
        chosen_held = weather[np.argmax(held_scores[:, weather], axis=1)]
        for group in groups:
            ids = [model.labels.index(g) for g in group]
            fit_rows, held_rows = np.isin(chosen_fit, ids), np.isin(chosen_held, ids)
            thresholds = rule.fit_thresholds_under_rule(y_fit[fit_rows], crossed[fit_rows],
                                                        post.thresholds)
            decided[held_rows] = rule.apply(held_scores[held_rows],
                                            held_scores[held_rows] > thresholds[None, :])
        out.append(f2_score(y_held, decided))
    return np.asarray(out)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="model directory, or 'default'")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    model = StoredModel.load(args.model)
    baseline = cv_scores(model.val, model.shipped, labels=model.labels)
    rows = {"shipped (thresholds, then the rule)": baseline}
    for c in (0.1, 1.0, 10.0):
        for inputs in ("all", "weather"):
            rows[f"expected F2 under the rule, weather C={c} on {inputs} scores"] = decoder_cv(
                model, lambda rule, c=c, i=inputs: RuleDecoder(rule, c, i))
    rows["expected F2, land not conditioned on clear"] = decoder_cv(
        model, lambda rule: RuleDecoder(rule, 1.0, "all", land_given_clear=False))
    for inputs in ("all", "weather"):
        rows[f"weather by the multinomial model on {inputs} scores, land by thresholds"] = (
            decoder_cv(model, lambda rule, i=inputs: RuleDecoder(rule, 1.0, i),
                       mix_thresholds=True))
    for groups in (GROUPS, [["clear"], ["partly_cloudy", "haze"]]):
        name = " / ".join("+".join(g) for g in groups)
        rows[f"land thresholds per chosen weather ({name})"] = weather_group_cv(
            model, groups)
    print(f"validation CV of {args.model} ({len(model.val.targets)} images, 5 folds x 2 "
          "shuffles)")
    print("| decision | F2 | vs shipped |\n|---|---:|---:|")
    table = {name: paired(scores, baseline) for name, scores in rows.items()}
    for name, row in table.items():
        print(f"| {name} | {row['f2']:.4f} | {row['diff']:+.4f} ± {row['diff_se']:.4f} |")
    return table


if __name__ == "__main__":
    main()
