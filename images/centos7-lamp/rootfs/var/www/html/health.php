<?php
// Readiness and liveness for the LAMP pod: PHP runs, and the data volume is writable.
header('Content-Type: text/plain');
$ok = is_writable('/var/www/data');
http_response_code($ok ? 200 : 503);
echo $ok ? "ok\n" : "data volume not writable\n";
