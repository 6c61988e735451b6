select * exclude (lake_file) from ({{ lake_scan('unit_concept_tally_folds') }})
