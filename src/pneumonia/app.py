"""Upload app (Streamlit): ``make app`` or ``pneumonia app``.

One page: upload a chest X-ray, see the prediction with its probability and threshold, and a
Grad-CAM overlay. Bad files get the same one-line refusal as the CLI; the app never shows a
traceback. For education and research; not a diagnosis.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pneumonia import config
from pneumonia.reporting import DISCLAIMER


def published_models(models_dir: Path | None = None) -> list[Path]:
    """Models with a sidecar, without the per-seed copies (``cnn.keras``, not ``cnn-seed1.keras``)."""
    models_dir = models_dir or config.MODELS_DIR
    return sorted(p for p in models_dir.glob("*.keras") if p.with_suffix(".json").exists() and "-seed" not in p.stem)


@st.cache_resource(show_spinner="Loading the model…")
def load_predictor(path: str, ensemble: bool = False):
    from pneumonia.predict import Predictor

    return Predictor(path, ensemble=ensemble)


def ensemble_seeds(model_path: Path) -> list[int]:
    """The seeds a published model's sidecar averages in its ensemble (empty when it lists one seed)."""
    from pneumonia.evaluate import load_sidecar

    return list(load_sidecar(model_path).get("ensemble", {}).get("seeds", []))


def main() -> None:
    st.set_page_config(page_title="Pneumonia detection — research demo", layout="wide")
    st.title("Pneumonia detection in chest X-rays")
    st.warning(DISCLAIMER)

    models = published_models()
    if not models:
        st.info(
            f"No trained model in {config.MODELS_DIR}. Train one first: "
            "`make reproduce DATA=PATH` (notebook 04 writes models/cnn.keras)."
        )
        return
    chosen = models[0]
    if len(models) > 1:
        chosen = st.selectbox("Model", models, format_func=lambda p: p.stem)
    seeds = ensemble_seeds(chosen)
    ensemble = bool(seeds) and st.checkbox(
        f"Average its {len(seeds)} seeds (ensemble)",
        help="The mean of the seeds' probabilities, at the ensemble's own validation threshold: better ranking "
             "under a shift of the data, several times the prediction cost. Grad-CAM comes from the first seed.",
    )

    uploaded = st.file_uploader("Upload a chest X-ray image...", type=["jpg", "jpeg", "png"])
    if uploaded is None:
        return

    from pneumonia.predict import read_image

    predictor = load_predictor(str(chosen), ensemble)
    payload = uploaded.getvalue()
    try:
        image = read_image(payload, predictor.image_size, predictor.channels)
        preview = read_image(payload, 512, 1)
    except ValueError as reason:
        st.error(f"Refused {uploaded.name}: {reason}")
        return

    probability = float(predictor.probabilities(image[None])[0])
    verdict = "Pneumonia" if probability >= predictor.threshold else "No pneumonia"
    st.subheader(f"Prediction: {verdict}")
    which = f"ensemble of seeds {', '.join(map(str, seeds))}" if ensemble else f"seed {predictor.sidecar.get('seed')}"
    st.write(
        f"Probability of pneumonia: **{probability:.1%}** — threshold {predictor.threshold:.2f}, chosen on the "
        f"validation split (model `{chosen.stem}`, {which}, weights: {predictor.sidecar.get('weights')})."
    )
    left, right = st.columns(2)
    left.image(preview, caption=uploaded.name, clamp=True, use_container_width=True)
    right.image(predictor.heatmap(image), caption="Grad-CAM: regions that raised the pneumonia score",
                use_container_width=True)


def run() -> None:
    """``main`` with a last line of defence: any unexpected error is one line, never a traceback."""
    try:
        main()
    except Exception as error:  # noqa: BLE001 - the page must stay readable whatever happens
        message = str(error).splitlines()[0] if str(error) else ""
        st.error(f"Something went wrong: {type(error).__name__}: {message}")


if __name__ == "__main__":
    run()
