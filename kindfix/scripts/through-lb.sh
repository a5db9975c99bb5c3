# kindfix verify (kindfix/verify.py): "$1" requests to "$2" through the load balancer in one
# exec. First curl's version line ("@@kindfix-curl <curl --version's first line>"), then per
# request its HTTP code and the chain the server presented (curl >= 7.88 `%{certs}`; older curl
# prints nothing for it), then the separator "@@kindfix-request". Each request is bounded (3 s).
echo "@@kindfix-curl $(curl --version 2>/dev/null | head -n1)"
i=0
while [ "$i" -lt "$1" ]; do
  curl -sk --max-time 3 -o /dev/null -w '%{http_code}\n%{certs}\n' "$2" 2>/dev/null
  echo @@kindfix-request
  i=$((i+1))
done
