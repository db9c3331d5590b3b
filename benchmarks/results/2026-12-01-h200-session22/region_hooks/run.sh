#!/bin/bash
# session 22: a checkpointed region runs without the global module hooks (change.patch on 4e5bf9c, not merged: no
# measurable gain) against 4e5bf9c (in $1): the step A/B of checkpointing alone and intra_inter+checkpoint, both
# shapes, old and new alternated twice in one machine start. To rerun: git apply change.patch first.
export TRITON_INTERPRET=0
bash benchmarks/ab_step.sh $1 plain,checkpoint,intra_inter+checkpoint@2
