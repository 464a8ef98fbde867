<?php
// The app's front page: one page that shows the stack works end to end (Apache, PHP, the
// MariaDB client and the database) by rendering rows read from MariaDB. Shared by
// images/centos7-lamp (PHP 5.4, an external database) and images/lab-lamp (PHP 8.2, an
// embedded one), so it keeps to PHP 5.4's syntax: no `??`, no typed parameters.
//
// The connection comes from the environment; each NUBLAR_DB_* variable has a default:
//   NUBLAR_DB_HOST (localhost: the Unix socket), NUBLAR_DB_PORT (3306), NUBLAR_DB_SOCKET
//   (PHP's default socket), NUBLAR_DB_USER (nublar), NUBLAR_DB_PASSWORD (empty),
//   NUBLAR_DB_NAME (nublar). The page reads the table `attractions` (id, name, note).
// Without a database the page answers 503 with the reason, never a PHP error page.

function env_or($name, $default)
{
    $value = getenv($name);
    return ($value === false || $value === '') ? $default : $value;
}

function h($s)
{
    return htmlspecialchars((string) $s, ENT_QUOTES, 'UTF-8');
}

function page($status, $title, $body)
{
    http_response_code($status);
    header('Content-Type: text/html; charset=utf-8');
    // The rows change under the cache; a failure must not be cached by the proxy in front.
    header('Cache-Control: ' . ($status === 200 ? 'max-age=10' : 'no-store'));
    echo "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>" . h($title) . "</title></head>\n";
    echo "<body>\n<h1>" . h($title) . "</h1>\n" . $body . "</body>\n</html>\n";
    exit;
}

if (!function_exists('mysqli_connect')) {
    page(503, 'Database unavailable', "<p>PHP has no mysqli extension.</p>\n");
}

// PHP 8.1 made mysqli throw by default, PHP 5.4 warns: errors are checked by hand in both.
mysqli_report(MYSQLI_REPORT_OFF);
$host = env_or('NUBLAR_DB_HOST', 'localhost');
$name = env_or('NUBLAR_DB_NAME', 'nublar');
$socket = env_or('NUBLAR_DB_SOCKET', null);
$rows = array();
$error = null;
try {
    $db = @mysqli_connect($host, env_or('NUBLAR_DB_USER', 'nublar'), env_or('NUBLAR_DB_PASSWORD', ''), $name,
        (int) env_or('NUBLAR_DB_PORT', '3306'), $socket);
    if (!$db) {
        $error = 'cannot connect to MariaDB at ' . ($host === 'localhost' ? 'its socket' : $host) . ': ' . mysqli_connect_error();
    } else {
        $result = @mysqli_query($db, 'SELECT id, name, note FROM attractions ORDER BY id LIMIT 20');
        if (!$result) {
            $error = "cannot read $name.attractions: " . mysqli_error($db);
        } else {
            while ($row = mysqli_fetch_assoc($result)) {
                $rows[] = $row;
            }
            mysqli_free_result($result);
        }
        mysqli_close($db);
    }
} catch (Exception $e) {
    $error = 'database error: ' . $e->getMessage();
} catch (Throwable $e) {
    // PHP 7+ only (PHP 5.4 parses this and never matches it): type errors and the like.
    $error = 'database error: ' . $e->getMessage();
}

if ($error !== null) {
    error_log("index.php: $error");
    page(503, 'Database unavailable', '<p>' . h($error) . "</p>\n");
}

$body = "<table>\n<tr><th>id</th><th>name</th><th>note</th></tr>\n";
foreach ($rows as $row) {
    $body .= '<tr><td>' . h($row['id']) . '</td><td>' . h($row['name']) . '</td><td>' . h($row['note']) . "</td></tr>\n";
}
$body .= "</table>\n<p>" . count($rows) . ' row(s) from ' . h($name) . '.attractions, served by ' . h(php_uname('n')) . ".</p>\n";
page(200, 'Nublar attractions', $body);
