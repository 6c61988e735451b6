select * exclude (lake_file) from ({{ lake_scan('runs') }})
