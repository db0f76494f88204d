"""A real S3-compatible server for fleetward's artifact-store tests.

moto's S3 (installed from PyPI) speaks the S3 REST API with multipart
uploads, ranged GETs and SigV4 pre-signed URLs. Authentication is switched on
after the setup below, so requests signed with a wrong key or a wrong
secret are refused as on real S3.

moto does not check the signature or expiry of pre-signed URLs, and its
authentication crashes on them (no Authorization header), so a test that
follows pre-signed URLs turns authentication off first: it writes
`auth off` (or `auth on`) as a line to standard input and waits for `ok`.

Prints one JSON line (endpoint, bucket, access key, secret), then serves
until its standard input closes (the test ended or died).
"""

import json
import sys

import boto3
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
endpoint = f"http://{host}:{port}"

# Four unauthenticated actions for the setup, then every request must be
# signed by a known key with a valid signature.
settings.INITIAL_NO_AUTH_ACTION_COUNT = 4
ActionAuthenticatorMixin.request_count = 0
setup = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="setup",
    aws_secret_access_key="setup",
)
iam = boto3.client("iam", **setup)
iam.create_user(UserName="fleetward")
iam.put_user_policy(
    UserName="fleetward",
    PolicyName="artifacts",
    PolicyDocument=json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
    ),
)
key = iam.create_access_key(UserName="fleetward")["AccessKey"]
bucket = "fleetward-artifacts"
boto3.client("s3", **setup).create_bucket(Bucket=bucket)

print(
    json.dumps(
        {
            "endpoint": endpoint,
            "bucket": bucket,
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
        }
    ),
    flush=True,
)
for line in sys.stdin:
    command = line.strip()
    if command == "auth off":
        settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    elif command == "auth on":
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
    else:
        print(f"unknown command {command!r}", flush=True)
        continue
    print("ok", flush=True)
server.stop()
