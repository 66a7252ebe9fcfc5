<?xml version="1.0" encoding="UTF-8"?>
<!-- Missed-call mail, German.  Input: the <missedCall> document built by
     appliance.missed.render.notice_document.  Runs without file or network
     access: xsl:include, xsl:import, document() and entities are refused. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="html" encoding="UTF-8" indent="yes"/>

  <xsl:template match="/missedCall">
    <html>
      <head><title>Verpasster Anruf</title></head>
      <body style="font-family: sans-serif">
        <h1>Verpasster Anruf</h1>
        <table>
          <tr><th align="left">Von</th><td><xsl:apply-templates select="caller"/></td></tr>
          <tr><th align="left">Rufnummer</th><td><xsl:apply-templates select="caller/number"/></td></tr>
          <xsl:if test="caller/contact/organization != ''">
            <tr><th align="left">Firma</th><td><xsl:value-of select="caller/contact/organization"/></td></tr>
          </xsl:if>
          <xsl:if test="caller/contact/email != ''">
            <tr><th align="left">E-mail</th><td><xsl:value-of select="caller/contact/email"/></td></tr>
          </xsl:if>
          <tr><th align="left">Für</th><td><xsl:value-of select="called/name"/> (<xsl:value-of select="called/extension"/>)</td></tr>
          <tr><th align="left">Wann</th><td><xsl:value-of select="time/@date"/>, <xsl:value-of select="time/@clock"/> Uhr</td></tr>
          <tr><th align="left">Geklingelt</th><td><xsl:value-of select="ringSeconds"/> Sekunden</td></tr>
          <xsl:if test="answeredBy">
            <tr><th align="left">Angenommen von</th><td><xsl:value-of select="answeredBy"/></td></tr>
          </xsl:if>
        </table>
      </body>
    </html>
  </xsl:template>

  <xsl:template match="caller">
    <xsl:choose>
      <xsl:when test="contact/name != ''"><xsl:value-of select="contact/name"/></xsl:when>
      <xsl:when test="name != ''"><xsl:value-of select="name"/></xsl:when>
      <xsl:when test="@suppressed = 'true'">Rufnummer unterdrückt</xsl:when>
      <xsl:otherwise><xsl:value-of select="number"/></xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template match="number">
    <xsl:choose>
      <xsl:when test="../link"><a href="{../link}"><xsl:value-of select="."/></a></xsl:when>
      <xsl:when test=". = ''">unterdrückt</xsl:when>
      <xsl:otherwise><xsl:value-of select="."/></xsl:otherwise>
    </xsl:choose>
  </xsl:template>
</xsl:stylesheet>
