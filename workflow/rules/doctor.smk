# Pre-flight: `cgrseg doctor` checks packages, registry, devices (or SLURM partitions), disk, backbone
# weights and output roots before any download or training starts; it writes nothing, Snakemake
# touches the marker. ancient(): a re-check (new params, new lock) never re-runs a finished training.
import json

import cgrseg.doctor as doctor


localrules:
    doctor,


DOCTOR = f"{RESULTS}/doctor.passed"


rule doctor:
    priority: wf.DATA_PRIORITY
    input:
        weights=lambda w: sorted({p for v in config["variants"] for p in wf.pretrained_inputs(config, v)}),
    output:
        touch(DOCTOR),
    params:
        effective=lambda w: json.dumps(config, sort_keys=True),  # a function: the JSON has braces
        executor=lambda w: doctor.rule_executor(workflow),
        partitions=lambda w: doctor.rule_partitions(doctor.rule_executor(workflow)),
    log:
        f"{LOGS}/doctor.log",
    benchmark:
        f"{BENCH}/doctor.tsv"
    shell:
        "cgrseg doctor --params-json {params.effective:q} --executor {params.executor:q} --partitions {params.partitions:q} > {log:q} 2>&1"
