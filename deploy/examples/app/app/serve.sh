#!/bin/sh
# Serve /srv/www on :8080 in the foreground (the container's main process).
echo "example app $APP_VERSION serving /srv/www on :8080"
exec httpd -f -v -p 8080 -h /srv/www
