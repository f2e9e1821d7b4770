# The pilot (`snakemake --cores 2 pilot`): design decisions on seeds that are neither confirmatory nor search
# seeds, on validation accuracy only. The study does not depend on it; the protocol declares what it found.
PILOT_JOBS = pilot_jobs(config)


rule pilot_cell:
    input:
        data=rules.prepare_dataset.output.data,
    output:
        "results/pilot/cells/{pilot}.json",
    log:
        "results/logs/pilot/{pilot}.log",
    wildcard_constraints:
        pilot="|".join(PILOT_JOBS) or "NONE",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2048,
        runtime=240,
    params:
        seeds=config["protocol"]["pilot"]["seeds"],
        lr=lambda wildcards: PILOT_JOBS[wildcards.pilot]["lr"],
        options=lambda wildcards: json.dumps(
            PILOT_JOBS[wildcards.pilot]["options"], sort_keys=True
        ),
    script:
        "../scripts/pilot_cell.py"


rule pilot:
    input:
        expand("results/pilot/cells/{pilot}.json", pilot=PILOT_JOBS),
    output:
        "results/pilot/pilot.json",
    log:
        "results/logs/pilot/pilot.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1024,
        runtime=10,
    params:
        protocol=json.dumps(config["protocol"], sort_keys=True, ensure_ascii=False),
    script:
        "../scripts/pilot.py"
