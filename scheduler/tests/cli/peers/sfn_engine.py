#!/usr/bin/env python3
"""moto's server with its Step Functions engine on: the peer that executes
the state machines `chainbatch export step-functions` prints.

moto 5.2's engine (LocalStack's ASL interpreter) hands a service
integration's parameters to the service as the state machine spells them
(`JobName`, `ContainerOverrides`) and reads the answer as the API spells it
(`jobId`), where AWS maps both to and from the API's member names, as its
Step Functions documents show (`"JobName"` in, `$.JobId` out). moto left
that mapping a no-op; this peer restores it from botocore's service models,
with moto's own helpers. Every service call the engine makes goes to
http://localhost:$MOTO_PORT: the tests point that at the Batch peer, which
also forwards S3 reads.

Usage: sfn_engine.py --port N
Prints `PORT <n>` once it listens on 127.0.0.1, then serves until killed;
execution of state machines is switched on.
"""

import argparse
import json
import time
import urllib.request

import botocore.session
from botocore import xform_name
from moto.server import ThreadedMotoServer
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)

_SESSION = botocore.session.get_session()


def _operation(service, action):
    """The botocore operation model of `action` (snake case) of `service`."""
    model = _SESSION.get_service_model(service)
    for name in model.operation_names:
        if xform_name(name) == action:
            return model.operation_model(name)
    return None


def _normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
    op = _operation(self._get_boto_service_name(boto_service_name),
                    self._get_boto_service_action(service_action_name))
    if op is not None and op.input_shape is not None:
        self._to_boto_request(parameters, op.input_shape)


def _normalise_response(self, response, boto_service_name=None, service_action_name=None):
    op = _operation(self._get_boto_service_name(boto_service_name),
                    self._get_boto_service_action(service_action_name))
    if op is not None and op.output_shape is not None:
        self._from_boto_response(response, op.output_shape)


StateTaskService._normalise_parameters = _normalise_parameters
StateTaskService._normalise_response = _normalise_response


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port)
    server.start()
    urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{args.port}/moto-api/config", method="POST",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"})).read()
    print(f"PORT {args.port}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
