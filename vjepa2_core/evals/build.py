"""From an eval config (reference layout) to the frozen feature model, the datasets and the probe heads.

`model_kwargs.checkpoint` is a pretraining checkpoint: this project's (it carries `model_config`) or a released
one (then `pretrain_kwargs.encoder.model_name` + the resolution name the registry entry). `random_init: true`
keeps the architecture and discards the weights: the random-encoder baseline every probe result needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vjepa2_core.data.ek100 import ClassMaps, EK100Anticipation, read_annotations
from vjepa2_core.data.labeled_video import ImageFolderDataset, VideoListDataset, eval_as_clip_transform
from vjepa2_core.data.transforms import ProbeTrainTransform, eval_video_transform
from vjepa2_core.evals.anticipation import AnticipativeWrapper
from vjepa2_core.evals.probe import AnticipativeClassifier
from vjepa2_core.evals.wrappers import ClipAggregation, ImageAsVideo
from vjepa2_core.hub import load_checkpoint, load_encoder, load_encoder_and_predictor
from vjepa2_core.models.attentive_pooler import AttentiveClassifier

EVAL_NAMES = ("video_classification_frozen", "image_classification_frozen", "action_anticipation_frozen")


def _registry_name(enc_kwargs: Mapping[str, Any], resolution: int) -> str:
    name = str(enc_kwargs["model_name"]).replace("_xformers", "")
    return f"{name}_384" if resolution == 384 and name == "vit_giant" else name


def load_models(model_kwargs: Mapping[str, Any], resolution: int, with_predictor: bool) -> tuple[nn.Module, ...]:
    """(encoder,) or (encoder, predictor), frozen, from the pretraining checkpoint the config names."""
    enc_kwargs = model_kwargs["pretrain_kwargs"]["encoder"]
    ckpt = load_checkpoint(model_kwargs["checkpoint"])
    name = None if "model_config" in ckpt else _registry_name(enc_kwargs, resolution)
    key = enc_kwargs.get("checkpoint_key", "target_encoder")
    if key not in ckpt and "encoder" in ckpt:
        key = "encoder"
    if with_predictor:
        models = load_encoder_and_predictor(name, checkpoint=ckpt, key=key)
    else:
        models = (load_encoder(name, checkpoint=ckpt, key=key),)
    if model_kwargs.get("random_init"):  # same architecture, reference initialisation, seeded
        torch.manual_seed(int(model_kwargs.get("random_seed", 0)))
        for m in models:
            m.reset_parameters()
    return tuple(m.eval().requires_grad_(False) for m in models)


def build_feature_model(cfg: Mapping[str, Any]) -> nn.Module:
    """The frozen wrapper the probes read: ClipAggregation, ImageAsVideo or AnticipativeWrapper."""
    data, mk = cfg["experiment"]["data"], cfg["model_kwargs"]
    wk = mk["wrapper_kwargs"]
    tubelet = int(mk["pretrain_kwargs"]["encoder"].get("tubelet_size", 2))
    if cfg["eval_name"] == "action_anticipation_frozen":
        encoder, predictor = load_models(mk, data["resolution"], with_predictor=True)
        return AnticipativeWrapper(encoder, predictor, tubelet, int(wk.get("num_future", 1)))
    (encoder,) = load_models(mk, data["resolution"], with_predictor=False)
    out_layers = wk.get("out_layers")
    if cfg["eval_name"] == "image_classification_frozen":
        return ImageAsVideo(encoder, int(wk.get("img_as_video_nframes", 2)), out_layers)
    use_pos = bool(cfg["experiment"]["optimization"].get("use_pos_embed", wk.get("use_pos_embed", False)))
    return ClipAggregation(encoder, tubelet, int(wk.get("max_frames", 128)), use_pos, out_layers)


def _train_transform(data: Mapping[str, Any]) -> ProbeTrainTransform:
    return ProbeTrainTransform(
        data["resolution"],
        tuple(data["random_resize_scale"]),
        tuple(data["random_resize_aspect_ratio"]),
        data["horizontal_flip"],
        data["auto_augment"],
        data["reprob"],
        data["motion_shift"],
    )


def build_datasets(cfg: Mapping[str, Any], seed: int = 0) -> tuple[Any, Any, ClassMaps | None]:
    """(train, val, EK100 class maps or None). Train uses 1 view per segment; val `num_views_per_segment`."""
    data, name = cfg["experiment"]["data"], cfg["eval_name"]
    train_tf = _train_transform(data)
    val_tf = eval_as_clip_transform(eval_video_transform(data["resolution"], data["num_views_per_segment"]))
    if name == "image_classification_frozen":
        val_tf = eval_as_clip_transform(eval_video_transform(data["resolution"], 1))
        return (
            ImageFolderDataset(data["dataset_train"], train_tf, training=True, seed=seed),
            ImageFolderDataset(data["dataset_val"], val_tf, seed=seed),
            None,
        )
    if name == "action_anticipation_frozen":
        train_seg = read_annotations(data["dataset_train"], data["base_path"])
        val_seg = read_annotations(data["dataset_val"], data["base_path"])
        classes = ClassMaps.build(train_seg, val_seg)
        common = dict(frames_per_clip=data["frames_per_clip"], frames_per_second=data["frames_per_second"], seed=seed)
        train = EK100Anticipation(
            train_seg,
            classes,
            train_tf,
            anticipation_time_sec=data["train_anticipation_time_sec"],
            training=True,
            **common,
        )
        val = EK100Anticipation(
            val_seg, classes, val_tf, anticipation_time_sec=data["anticipation_time_sec"], **common
        )
        return train, val, classes
    common = dict(frames_per_clip=data["frames_per_clip"], frame_step=data["frame_step"], seed=seed)
    common.update(num_segments=data["num_segments"], start_multiple=data["clip_start_multiple"])
    return (
        VideoListDataset(data["dataset_train"], train_tf, training=True, **common),
        VideoListDataset(data["dataset_val"], val_tf, **common),
        None,
    )


def build_classifiers(cfg: Mapping[str, Any], embed_dim: int, classes: ClassMaps | None, n: int) -> list[nn.Module]:
    """`n` probe heads (one per multihead_kwargs entry, or per classifier of a probe file)."""
    clf = cfg["experiment"]["classifier"]
    heads, depth = clf["num_heads"], clf["num_probe_blocks"]
    if classes is not None:
        sizes = (len(classes.verbs), len(classes.nouns), len(classes.actions))
        return [AnticipativeClassifier(embed_dim, heads, depth, *sizes) for _ in range(n)]
    num_classes = cfg["experiment"]["data"]["num_classes"]
    return [AttentiveClassifier(embed_dim, heads, depth=depth, num_classes=num_classes) for _ in range(n)]
