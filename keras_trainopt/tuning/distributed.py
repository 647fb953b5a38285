"""The search on keras-tuner's distributed mode: one chief, N workers, gRPC.

keras-tuner runs a search across processes when every process has
`KERASTUNER_TUNER_ID` ("chief" for one, "tuner0", "tuner1", ... for the
others), `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`: the chief keeps
the oracle behind a gRPC server and trains nothing, the workers ask it for
trials (`OracleClient`), train them and report back. `search_hyperparameters`
runs unchanged in every process and maps its two stages onto this:

- the chief serves one oracle per stage, in order, on the same address
  (project "coarse", then "fine"); it starts the fine oracle only once the
  coarse one handed out all its trials and every worker reported;
- each stage's oracle carries markers as fixed hyperparameters: the stage's
  number, the HParams folder the chief claimed, and for the fine stage the
  best coarse configuration, from which every worker narrows the same fine
  space the chief did;
- a worker waits for the oracle of the stage it is at (a worker that comes
  late skips a stage already over), trains what the oracle gives it, and
  writes each of its trials' HParams session; the chief writes the
  experiment and returns every worker's trials, read from its oracles.

The chief's server is keras-tuner's own `OracleServicer`; it is started and
stopped here (keras-tuner's `start_server` polls every 20 s and never stops
the server, so a second stage could not bind the same port).
"""

import json
import os
import time

from keras_tuner.src.distribute import utils as dist_utils

# Fixed hyperparameters of a distributed search's oracles (see module doc).
STAGE = "keras_trainopt_stage"
LOG_FOLDER = "keras_trainopt_log_folder"
COARSE_BEST = "keras_trainopt_coarse_best"

# How long a worker waits for the chief's oracle of its stage, in seconds.
WAIT_SECONDS = 3600.0


def role():
    """"chief", "worker", or `None` when keras-tuner is not distributed."""
    if not dist_utils.has_chief_oracle():
        return None
    return "chief" if dist_utils.is_chief_oracle() else "worker"


def markers(stage_index, log_folder, coarse_best=None):
    """The fixed hyperparameters that tell workers about a stage.

    Args:
        stage_index: the stage's place in the plan (0 coarse, 1 fine).
        log_folder: the HParams folder the chief claimed ("" for none).
        coarse_best: the best coarse row's knobs (for the fine stage).
    """
    values = {STAGE: int(stage_index), LOG_FOLDER: log_folder or ""}
    if coarse_best is not None:
        values[COARSE_BEST] = json.dumps(coarse_best, sort_keys=True)
    return values


def serve(oracle, poll_seconds=0.1):
    """Serves `oracle` to the workers until its trials are all reported.

    Blocks like keras-tuner's `oracle_chief.start_server`, with the same
    servicer and the same end (a worker was told to stop, no trial is
    running and every worker left), then stops the server so that the next
    stage can serve on the same address.

    Args:
        oracle: the stage's keras-tuner `Oracle`.
        poll_seconds: how often to check for the end.
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    address = (f"{os.environ['KERASTUNER_ORACLE_IP']}:"
               f"{os.environ['KERASTUNER_ORACLE_PORT']}")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(
            f"The chief could not serve the oracle on {address}: is "
            "KERASTUNER_ORACLE_PORT free on this machine?"
        )
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1.0).wait()


def wait_for_stage(stage_index, timeout=WAIT_SECONDS, poll_seconds=0.2):
    """The markers of the chief's oracle, once it serves stage `stage_index`
    or a later one.

    Args:
        stage_index: the stage this worker is at.
        timeout: seconds before giving up with a `TimeoutError`.
        poll_seconds: the pause between two tries.
    """
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.engine import hyperparameters as hp_module

    address = (f"{os.environ['KERASTUNER_ORACLE_IP']}:"
               f"{os.environ['KERASTUNER_ORACLE_PORT']}")
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = protos.get_service_grpc().OracleStub(channel)
        while True:
            try:
                response = stub.GetSpace(
                    protos.get_service().GetSpaceRequest(),
                    wait_for_ready=True, timeout=max(1.0, poll_seconds * 5))
                values = hp_module.HyperParameters.from_proto(
                    response.hyperparameters).values
                if values.get(STAGE, -1) >= stage_index:
                    return dict(values)
            except grpc.RpcError:
                pass  # between two stages no server listens
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"No chief oracle for search stage {stage_index} on "
                    f"{address} within {timeout:g} s: is the chief running "
                    "(KERASTUNER_TUNER_ID=chief) with the same arguments?"
                )
            time.sleep(poll_seconds)


def coarse_best(values):
    """The best coarse configuration a fine-stage oracle carries."""
    return json.loads(values[COARSE_BEST])
