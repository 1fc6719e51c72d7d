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
        out=lambda w, output: str(Path(output[0]).parent),
        images=config["synth_images"],
    log:
        f"{LOGS}/synth/{{dataset}}.log",
    benchmark:
        f"{BENCH}/synth/{{dataset}}.tsv"
    shell:
        "cgrseg synth {wildcards.dataset:q} --out {params.out:q} --images {params.images:q} > {log:q} 2>&1"


rule download:
    priority: wf.priority(config, "download")
    input:
        lambda w: wf.download_inputs(config, w.dataset),
        doctor=ancient(DOCTOR),
    output:
        # a marker, not the folder: Snakemake would delete a failed download's partial archives,
        # which the next attempt resumes
        touch(f"{RAW}/{{dataset}}.downloaded"),
    params:
        dest=lambda w, output: output[0].removesuffix(".downloaded"),
        sources=lambda w: wf.download_sources(config, w.dataset),
        from_dir=config["archive_dir"] if config["sources"] == "real" else None,
    log:
        f"{LOGS}/download/{{dataset}}.log",
    benchmark:
        f"{BENCH}/download/{{dataset}}.tsv"
    shell:
        "cgrseg download {wildcards.dataset:q} --dest {params.dest:q} --sources {params.sources:q}"
        " --from-dir {params.from_dir:q} > {log:q} 2>&1"


rule prepare:
    priority: wf.priority(config, "prepare")
    input:
        rules.download.output,
    output:
        f"{PREPARED}/{{dataset}}.manifest.json",
    params:
        raw=lambda w, input: input[0].removesuffix(".downloaded"),
        out=lambda w, output: str(Path(output[0]).parent),
    threads: wf.threads(config, "prepare")
    resources:
        **wf.resources(config, "prepare"),
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    benchmark:
        f"{BENCH}/prepare/{{dataset}}.tsv"
    shell:
        "cgrseg prepare {wildcards.dataset:q} --raw {params.raw:q} --out {params.out:q} --jobs {threads:q}"
        " > {log:q} 2>&1"
