# Names shared by the rule files. `config` is params.yaml after --config, checked against
# workflow/schemas/params.schema.yaml (one line per bad key, exit 2) with the schema's defaults added;
# each rule reads the keys it uses in its own params, next to the flag that passes them.
# Where files lie under a run's results root: cgrseg.layout; decisions beyond a key: cgrseg.workflow.
from pathlib import Path

import cgrseg.workflow as wf
from cgrseg import layout
from cgrseg.mmseg_config import option_args

config.update(wf.or_exit(wf.effective_params, config))
wf.put_interpreter_on_path()

# the preset block this run uses (params.yaml presets.<preset>)
PRESET = config["presets"][config["preset"]]
# Every file a run writes lies under RESULTS (results/<preset>): a fresh clone has no results/demo,
# so its first `snakemake` runs the whole DAG. Real data sets stay in params.yaml data_root.
RESULTS = wf.results_root(config)
DATA = wf.data_root(config)
RAW = wf.raw_root(config)
PREPARED = f"{DATA}/prepared"
WORK = wf.work_root(config)
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
HYPOTHESES = wf.or_exit(wf.load_hypotheses, layout.HYPOTHESES)
# one trained model: {dataset}/cgrseg-{variant}; one run of it: .../seed{seed}
MODEL = "{dataset}/cgrseg-{variant}"
RUN = "{dataset}/cgrseg-{variant}/seed{seed}"
# collect, tables, diff, figure: defined once, in dvc.yaml (workflow/rules/tables.smk)
STAGES = wf.or_exit(wf.dvc_stages, config, wf.result_files(config, HYPOTHESES))
# plain paths: a stage's folder output carries directory(), a flag Snakemake warns about in an input
FINAL_TARGETS = [str(path) for stage in STAGES.values() for path in stage.outputs]


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    variant="|".join(config["variants"]),
    seed=r"\d+",
    arch="[a-z0-9]+",
    hypothesis="[A-Za-z0-9][A-Za-z0-9_-]*",
