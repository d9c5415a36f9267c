"""Datasets with the original's example keys: image (H, W, 3) float32 in [-1, 1], segmentation
(H, W, n_labels) one-hot, depth (H, W, 1) in [-1, 1], class_label, human_label, coord, LR_image,
file_path_.

    landscapes   built-in procedural scenes + segmentation (no files; the default data)
    custom       list files and image folders          faceshq   FFHQ, CelebA-HQ, FacesHQ
    imagenet     ImageNet (+ depth, D-RIN classes)     drin      D-RIN example folder
    sflckr       S-FLCKR segmentation                  ade20k    ADE20K     coco   COCO-Stuff
    webdataset   tar shards (images)                   codes     pre-tokenized code shards / arrays
    coord        coord maps, low-resolution copies     base, imageio, transforms, segmentation, depth
    annotated_objects_coco, annotated_objects_open_images   scene layouts: objects_bbox /
                 objects_center_points tokens (conditional_builder/), layout_crops, collate
Errors: `DataError` (stops, says what and where); unreadable files are skipped, counted and logged.
"""
from .errors import DataError, UnreadableFile

__all__ = ["DataError", "UnreadableFile"]
