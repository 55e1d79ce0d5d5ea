#!/usr/bin/env bash
# Short from-scratch runs at equal budget that each change one choice, then a comparison table.
#   bash training/ablations.sh age_gender   # serving-style Haar crops vs tight chips; age re-weighting on/off
#   bash training/ablations.sh emotion      # original FER2013 labels vs FER+ votes vs their blend
#   bash training/ablations.sh baseline     # the seed "Mood" network (~6x the compute) vs ours, same labels
# DATA (default ../shared/data), EPOCHS (default: the README tables' 12 / 6 / 3) and THREADS can be set
# in the environment. The runs are compared on validation data (UTKFace val, FER2013 PublicTest).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
THREADS=${THREADS:-1}

run() {   # run NAME TASK EPOCHS [extra training flags...]
    local name=$1 task=$2 epochs=$3 data
    shift 3
    data=$DATA/$([ "$task" = emotion ] && echo fer2013 || echo utkface)
    "$PY" -m training.train_"$task" --data-dir "$data" --run-dir runs/"$name" --epochs "$epochs" \
        --threads "$THREADS" "$@"
    "$PY" -m training.evaluate_"$task" --data-dir "$data" --run-dir runs/"$name" \
        --models-dir runs/"$name"/out --reports-dir runs/"$name"/out
}

case ${1:?age_gender, emotion or baseline} in
age_gender)
    E=${EPOCHS:-12}
    run abl_ag_haar age_gender "$E"
    run abl_ag_chip age_gender "$E" --crops chip
    run abl_ag_nobalance age_gender "$E" --no-age-balance
    "$PY" -m training.ablation_report --task age_gender --out reports/ablation_age_gender.json \
        haar_crops_balanced=runs/abl_ag_haar/out tight_chips=runs/abl_ag_chip/out \
        no_age_balance=runs/abl_ag_nobalance/out ;;
emotion)
    E=${EPOCHS:-6}
    run abl_fer_blend emotion "$E" --labels blend
    run abl_fer_fer emotion "$E" --labels fer
    run abl_fer_ferplus emotion "$E" --labels ferplus
    "$PY" -m training.ablation_report --task emotion --out reports/ablation_emotion.json \
        blend=runs/abl_fer_blend/out fer=runs/abl_fer_fer/out ferplus=runs/abl_fer_ferplus/out ;;
baseline)
    E=${EPOCHS:-3}
    run abl_fer_visage_e"$E" emotion "$E"
    run abl_fer_mood_e"$E" emotion "$E" --arch baseline
    "$PY" -m training.ablation_report --task emotion --out reports/ablation_emotion_arch.json \
        visage=runs/abl_fer_visage_e"$E"/out mood_baseline=runs/abl_fer_mood_e"$E"/out ;;
*) echo "usage: $0 age_gender|emotion|baseline" >&2; exit 2 ;;
esac
