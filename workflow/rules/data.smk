# Data: synthetic archives (demo) or the official ones -> download -> mmseg layout under {DATA}/prepared.
# Downloads run where Snakemake runs (login node on a cluster): compute nodes often have no internet.
localrules:
    synth,
    download,


rule synth:
    priority: wf.priority(config, "synth")
    output:
        wf.synthetic_sources(config, "{dataset}"),
    params:
        out=f"{DATA}/synthetic/{{dataset}}",
        args=wf.synth_args(config),
    log:
        f"{LOGS}/synth/{{dataset}}.log",
    benchmark:
        f"{BENCH}/synth/{{dataset}}.tsv"
    shell:
        "cgrseg synth {wildcards.dataset} --out {params.out} {params.args} > {log} 2>&1"


rule download:
    priority: wf.priority(config, "download")
    input:
        lambda w: wf.download_inputs(config, w.dataset),
    output:
        # a marker, not the folder: Snakemake would delete a failed download's partial archives,
        # which the next attempt resumes
        touch(f"{RAW}/{{dataset}}.downloaded"),
    params:
        dest=f"{RAW}/{{dataset}}",
        args=lambda w: wf.download_args(config, w.dataset),
    log:
        f"{LOGS}/download/{{dataset}}.log",
    benchmark:
        f"{BENCH}/download/{{dataset}}.tsv"
    shell:
        "cgrseg download {wildcards.dataset} --dest {params.dest} {params.args} > {log} 2>&1"


rule prepare:
    priority: wf.priority(config, "prepare")
    input:
        rules.download.output,
    output:
        f"{PREPARED}/{{dataset}}.manifest.json",
    params:
        raw=rules.download.params.dest,
    threads: wf.threads(config, "prepare")
    resources:
        **wf.resources(config, "prepare"),
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    benchmark:
        f"{BENCH}/prepare/{{dataset}}.tsv"
    shell:
        "cgrseg prepare {wildcards.dataset} --raw {params.raw} --out {PREPARED} --jobs {threads} > {log} 2>&1"
