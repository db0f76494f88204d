"""A TUF client nobody here wrote: python-tuf's ngclient against fleetward.

Refreshes from the image repository a fleetward server serves, downloads one
target and checks it. `--override PATH=FILE` serves FILE's bytes instead of the
server's answer for the URL ending in PATH, so tests can replay old, tampered
or mixed metadata at a real client. Prints one JSON line: {"ok": true,
"sha256": ...} or {"ok": false, "error": "<exception class>", "message": ...}.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import ssl
import urllib.request
import urllib.error

from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface, Updater


class OverridingFetcher(FetcherInterface):
    def __init__(self, overrides, tls):
        self.overrides = overrides
        self.tls = tls

    def _fetch(self, url):
        for suffix, path in self.overrides.items():
            if url.endswith(suffix):
                with open(path, "rb") as f:
                    return iter([f.read()])
        try:
            with urllib.request.urlopen(url, timeout=30, context=self.tls) as response:
                return iter([response.read()])
        except urllib.error.HTTPError as e:
            raise DownloadHTTPError(f"{url}: {e.code}", e.code) from e


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="https://host:port of the device listener")
    parser.add_argument("--ca", required=True, help="fleet CA certificate (PEM): the only trust anchor")
    parser.add_argument("--cert", required=True, help="this device's certificate (PEM)")
    parser.add_argument("--key", required=True, help="this device's private key (PEM)")
    parser.add_argument("--root", required=True, help="trusted root metadata (1.root.json)")
    parser.add_argument("--dir", required=True, help="client state directory (kept between runs)")
    parser.add_argument("--target", required=True)
    parser.add_argument("--override", action="append", default=[])
    args = parser.parse_args()

    metadata_dir = os.path.join(args.dir, "metadata")
    targets_dir = os.path.join(args.dir, "targets")
    os.makedirs(metadata_dir, exist_ok=True)
    shutil.rmtree(targets_dir, ignore_errors=True)
    os.makedirs(targets_dir)
    if not os.path.exists(os.path.join(metadata_dir, "root.json")):
        shutil.copy(args.root, os.path.join(metadata_dir, "root.json"))
    overrides = dict(o.split("=", 1) for o in args.override)
    tls = ssl.create_default_context(cafile=args.ca)
    tls.load_cert_chain(args.cert, args.key)
    try:
        updater = Updater(
            metadata_dir=metadata_dir,
            metadata_base_url=f"{args.base}/tuf/metadata/",
            target_dir=targets_dir,
            target_base_url=f"{args.base}/tuf/targets/",
            fetcher=OverridingFetcher(overrides, tls),
            bootstrap=None,  # trust the root.json copied into metadata_dir
        )
        updater.refresh()
        info = updater.get_targetinfo(args.target)
        if info is None:
            raise LookupError(f"target {args.target} is not in the signed metadata")
        path = updater.download_target(info)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        print(json.dumps({"ok": True, "sha256": digest, "length": info.length}))
    except Exception as e:  # the test wants the class of any failure
        print(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e)}))


if __name__ == "__main__":
    sys.exit(main())
