{#
  What the lake's image_features table holds, without the vectors: one row per (model, layer,
  image) with the vector's width. The similarity marts read the vectors of one (model, layer)
  partition at a time from the lake (warehouse/stats/similarity.py), so the published file does not carry
  them (0.5 GB per ResNet-50 layer4 at Broden scale).
#}
select model, layer, image, cast(len(features) as integer) as n_features
from ({{ lake_scan('image_features') }})
