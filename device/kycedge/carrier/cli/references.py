"""``kycedge-carrier reference``: reference templates from ID-document photos."""

from __future__ import annotations

import argparse
from pathlib import Path

from kycedge.carrier.cli.common import common_args, config_of, store_of


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ref = subparsers.add_parser("reference", help="reference templates from ID-document photos")
    rs = ref.add_subparsers(dest="reference_command", metavar="ACTION", required=True)
    p = rs.add_parser("add", help="enrol REF from an ID-document photo through the vision pipeline")
    common_args(p)
    p.add_argument("reference", help="the registration reference (opaque id from the agent's app)")
    p.add_argument("image", type=Path, help="JPEG/PNG of the ID-document photo")
    p.add_argument("--tenant", required=True)
    p.add_argument("--models", type=Path, default=None, help="models directory (default: kycedge's models/)")
    p.add_argument("--replace", action="store_true", help="replace an existing reference")
    p.set_defaults(handler=_reference_add)
    p = rs.add_parser("remove", help="delete a reference")
    common_args(p)
    p.add_argument("reference")
    p.add_argument("--tenant", required=True)
    p.set_defaults(handler=_reference_remove)


def _reference_add(args: argparse.Namespace) -> int:
    from kycedge import crypto
    from kycedge.carrier.references import References
    from kycedge.vision import Pipeline, default_models_dir
    from kycedge.vision.decode import read_image_file

    cfg = config_of(args)
    pipe = Pipeline.load(args.models or default_models_dir())
    image = read_image_file(args.image, pipe.config.decode)  # ImageError: reason and message
    key = crypto.load_secret_key(cfg.at_rest_key_path)
    with store_of(args) as store:
        rec = References(store, key).add_image(args.tenant, args.reference, image, pipe, replace=args.replace)
    print(f"reference {rec.tenant}/{rec.reference} model {rec.model_id} {rec.model_version} "
          f"dim {rec.dim} threshold {rec.threshold}")
    return 0


def _reference_remove(args: argparse.Namespace) -> int:
    from kycedge.core.errors import CarrierError

    with store_of(args) as store:
        if not store.delete_reference(args.tenant, args.reference):
            raise CarrierError(f"reference {args.tenant}/{args.reference}: expected one, got none",
                               reason="no-reference")
    print(f"removed {args.tenant}/{args.reference}")
    return 0
