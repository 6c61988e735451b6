select * exclude (lake_file) from ({{ lake_scan('unit_top_maps') }})
