<?php
// Readiness: PHP runs and the data volume is writable. Liveness (?live): PHP runs. A storage
// hiccup takes pods out of the Service, but does not restart them all at once.
header('Content-Type: text/plain');
$ok = isset($_GET['live']) || is_writable('/var/www/data');
http_response_code($ok ? 200 : 503);
echo $ok ? "ok\n" : "data volume not writable\n";
