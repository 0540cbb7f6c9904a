"""Training: start a run from a form in a background process, follow it live, then read its curves and result.

While a run trains, this page follows the job's progress file (sightql.train.jobs), polling every
few seconds without opening the warehouse (the run holds it only for short steps, but a poll
needs no file at all and sees steps within an epoch). Once the job has
ended, curves, evaluations and the registered version come from training_log,
training_evaluations and training_runs.
"""

from __future__ import annotations

import streamlit as st

from sightql.app.common import open_session, shown_errors
from sightql.app.widgets import confusion_heatmap, training_curves
from sightql.config import default_home
from sightql.train.jobs import JobStatus, active_jobs, job_status, list_jobs, start_job, stop_job
from sightql.train.options import TrainOptions
from sightql.train.runs import RunStore

POLL_SECONDS = 2.0
home = default_home()

st.title("Training")


def progress_text(job: JobStatus) -> str:
    if job.epoch is None:
        return f"{job.state}: {job.phase or 'starting the training process'}"
    text = f"epoch {job.epoch}/{job.epochs}, step {job.step}/{job.steps}"
    if job.train_loss is not None:
        text += f", loss {job.train_loss:.4f}, accuracy {job.train_acc:.3f}"
    return text + (f" ({job.phase})" if job.phase and job.phase != "training" else "")


@st.fragment(run_every=POLL_SECONDS)
def live_progress(job_id: str) -> None:
    job = job_status(home, job_id)
    if job.finished:
        st.rerun(scope="app")
    st.info(f"Training job {job.job_id} (process {job.pid}, model {job.request['name']}) is running. It holds the "
            "warehouse until it ends, so this page follows its progress file and other pages wait for the warehouse.")
    st.progress(job.fraction_done, text=progress_text(job))
    training_curves(job.history, key="live_history")
    if st.button("Stop training", help="Like Ctrl-C: a checkpoint is saved and the run can be resumed."):
        with shown_errors():
            stop_job(home, job_id)
            st.warning("Asked the training process to stop; it saves a checkpoint first.")


with shown_errors():
    running = active_jobs(home)
if running:
    live_progress(running[0].job_id)
    st.stop()

with st.form("train"):
    st.markdown("**Start a training run** (fine-tunes the base; the best epoch is registered)")
    source = st.text_input("Train on", placeholder="@xray/train", help="A table, or '@stage/prefix' of class folders.")
    left, right = st.columns(2)
    label = left.text_input("Label", value="folder", help="The label column of a table, or 'folder' for a stage.")
    base = right.text_input("Base", value="efficientnet_lite0",
                            help="efficientnet_lite0 (bundled), a torchvision architecture, or a registry reference.")
    c1, c2, c3, c4 = st.columns(4)
    # Empty: chosen from the data, as `sightql train` does (docs/training.md, "Settings chosen from the data").
    epochs = c1.number_input("Epochs (at most)", min_value=1, max_value=1000, value=None, placeholder="auto")
    batch_size = c2.number_input("Batch size", min_value=1, max_value=4096, value=32)
    lr = c3.number_input("Learning rate", min_value=0.00001, max_value=1.0, value=None, step=0.0001, format="%.5f",
                         placeholder="auto (range test)")
    image_size = c4.number_input("Image size (px)", min_value=16, max_value=1024, value=None, placeholder="auto")
    name = st.text_input("Register as", placeholder="xray", help="The model name; each run adds its next version.")
    submitted = st.form_submit_button("Start training", type="primary")
if submitted:
    with shown_errors():
        options = TrainOptions(name=name.strip(), source=source.strip(), label=label.strip(), base=base.strip(),
                               epochs=None if epochs is None else int(epochs), batch_size=int(batch_size),
                               lr="auto" if lr is None else float(lr),
                               image_size=None if image_size is None else int(image_size))
        start_job(home, options)
        st.rerun()

with shown_errors():
    jobs = list_jobs(home)
latest = jobs[0] if jobs else None
if latest is not None and latest.state == "completed":
    st.success(f"Job {latest.job_id} finished: "
               + (f"registered {latest.registered_version}" if latest.registered_version else "nothing registered"))
elif latest is not None:
    st.error(f"Job {latest.job_id} {latest.state}: {latest.error}")

with shown_errors(), open_session() as session:
    store = RunStore(session.warehouse)
    runs = store.list_runs().to_pylist()
    if not runs:
        st.caption("No training runs in this warehouse yet.")
        st.stop()
    st.subheader("Runs")
    ids = [r["run_id"] for r in runs]
    described = {r["run_id"]: f"{r['run_id']} — {r['name']}, {r['status']}" for r in runs}
    default = ids.index(latest.run_id) if latest is not None and latest.run_id in ids else 0
    run_id = st.selectbox("Run", ids, index=default, format_func=described.get)
    run = store.get(run_id)
    if run["registered_version"]:
        st.success(f"Registered {run['registered_version']}: call it from SQL as "
                   f"`classify('{run['registered_version']}', image)`")
    elif run["error"]:
        st.error(f"Run {run_id} {run['status']}: {run['error']}")
    else:
        st.caption(f"Run {run_id}: {run['status']}, nothing registered.")
    training_curves(store.epochs(run_id).to_pylist(), key="run_history")
    for evaluation in store.evaluations(run_id):
        confusion_heatmap(evaluation["report"], f"{evaluation['dataset']} set")
